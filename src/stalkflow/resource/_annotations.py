"""Reading the parameter annotations of a step or a factory, strings included.

Annotations written under ``from __future__ import annotations`` are strings;
they are evaluated in the callable's module, its closure and the declaring
scope. One that cannot be evaluated is left as a string rather than failing
the others.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, get_type_hints


def _globals_of(func: Callable[..., Any]) -> dict[str, Any]:
    target: Any = inspect.unwrap(func)
    if inspect.isclass(target):
        target = target.__init__
    elif not hasattr(target, "__globals__"):
        target = type(target).__call__  # a callable instance: its class defines __call__
    return dict(getattr(target, "__globals__", {}))


def _closure_names(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return dict(inspect.getclosurevars(inspect.unwrap(func)).nonlocals)
    except (TypeError, ValueError):
        return {}


def _evaluate(annotation: str, globalns: dict[str, Any], localns: Mapping[str, Any]) -> Any:
    # This is what typing.get_type_hints does for one string annotation.
    try:
        return eval(annotation, globalns, dict(localns))
    except Exception:
        return annotation


def _parameter_annotations(func: Callable[..., Any], localns: Mapping[str, Any]) -> dict[str, Any]:
    """Map each parameter of ``func`` to its annotation, with strings evaluated.

    ``get_type_hints`` is tried first; if any annotation cannot be resolved it
    fails as a whole, so each string is then evaluated on its own and the ones
    that still fail are left as strings (and so are not resources).
    """
    try:
        parameters = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return {}
    # A class's parameters are its __init__'s; class-body annotations (dataclass
    # fields) fill in the rest, and __init__'s win.
    sources: list[Any] = [func.__init__, func] if inspect.isclass(func) else [func]
    hints: dict[str, Any] = {}
    for source in reversed(sources):
        try:
            hints.update(get_type_hints(source, include_extras=True, localns=dict(localns)))
        except Exception:
            continue
    globalns = _globals_of(func)
    annotations: dict[str, Any] = {}
    for name, parameter in parameters.items():
        annotation = hints.get(name, parameter.annotation)
        if isinstance(annotation, str):
            annotation = _evaluate(annotation, globalns, localns)
        annotations[name] = annotation
    return annotations
