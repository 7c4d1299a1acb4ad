"""What a step function's signature declares, and whether it makes a valid step.

``@step`` reads a function in two phases, both usable on their own:

- :func:`inspect_signature` reports what the annotations say, without judging:
  which parameters take events (and which event types), what the function
  returns, which parameter receives the ``Context`` (and its state model), and
  which parameters receive resources;
- :func:`validate_step_signature` says whether that makes a step: exactly one
  event parameter and an annotated return.

Example::

    >>> def handle(ctx: Context, ev: StartEvent) -> StopEvent: ...
    >>> spec = inspect_signature(handle)
    >>> spec.accepted_events, spec.return_types, spec.context_parameter
    ({'ev': [StartEvent]}, [StopEvent], 'ctx')
    >>> validate_step_signature(spec)  # raises WorkflowValidationError if invalid

The names, signatures and messages are llama-index-workflows' (``workflows.utils``).
One difference: an event parameter annotated ``Annotated[MyEvent, <not a
resource>]`` counts as taking ``MyEvent`` here, where upstream ignores it.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from stalkflow.errors import WorkflowValidationError
from stalkflow.events import Event, EventType
from stalkflow.resource import ResourceDefinition, ResourceDescriptor

__all__ = [
    "StepSignatureSpec",
    "inspect_signature",
    "is_free_function",
    "validate_step_signature",
]


class StepSignatureSpec(BaseModel):
    """What a step function's signature declares (see :func:`inspect_signature`).

    Attributes:
        accepted_events: Event parameter name to the event types it takes (the
            members of a union, ``None`` left out).
        return_types: The returned types (members of a union, ``None`` left out;
            ``-> None`` gives ``[NoneType]``); empty when the return is not annotated.
        context_parameter: The parameter annotated ``Context`` / ``Context[Model]``.
        context_state_type: ``Model`` of a ``Context[Model]`` annotation.
        resources: The parameters annotated ``Annotated[T, Resource(...)]``.
    """

    accepted_events: dict[str, list[EventType]]
    return_types: list[Any]
    context_parameter: str | None
    context_state_type: Any | None
    resources: list[ResourceDefinition]


def inspect_signature(
    fn: Callable[..., Any], localns: dict[str, Any] | None = None
) -> StepSignatureSpec:
    """Read what ``fn``'s signature declares; ``self`` and ``cls`` are skipped.

    ``localns`` resolves postponed (string) annotations that name classes local
    to the scope where the step was defined.

    Raises:
        TypeError: ``fn`` is not callable.
        WorkflowValidationError: an annotation names something that cannot be found.
    """
    if not callable(fn):
        raise TypeError(f"Expected a callable object, got {type(fn).__name__}")
    hints = _resolve_type_hints(fn, localns, include_extras=True)
    events: dict[str, list[Any]] = {}
    context_parameter: str | None = None
    state_type: Any = None
    resources: list[ResourceDefinition] = []
    for name, parameter in inspect.signature(fn).parameters.items():
        if name in ("self", "cls"):
            continue
        annotation = hints.get(name, parameter.annotation)
        if _is_context(annotation):
            context_parameter = name
            args = get_args(annotation)
            state_type = args[0] if args else None
            continue
        if get_origin(annotation) is Annotated:
            base, *metadata = get_args(annotation)
            descriptor = next((m for m in metadata if isinstance(m, ResourceDescriptor)), None)
            if descriptor is not None:
                descriptor.set_localns(localns)
                resources.append(
                    ResourceDefinition(name=name, resource=descriptor, type_annotation=base)
                )
                continue
            annotation = base
        members = _members(annotation)
        if all(_is_event_type(member) for member in members):
            events[name] = members
    return StepSignatureSpec(
        accepted_events=events,
        return_types=_get_return_types(fn, localns),
        context_parameter=context_parameter,
        context_state_type=state_type,
        resources=resources,
    )


def validate_step_signature(spec: StepSignatureSpec) -> None:
    """Raise ``WorkflowValidationError`` unless ``spec`` describes a valid step.

    A step has exactly one event parameter and an annotated return type.
    """
    found = len(spec.accepted_events)
    if found == 0:
        raise WorkflowValidationError(
            "Step signature must have at least one parameter annotated as type Event"
        )
    if found > 1:
        raise WorkflowValidationError(
            f"Step signature must contain exactly one parameter of type Event but found {found}."
        )
    if not spec.return_types:
        raise WorkflowValidationError(
            "Return types of workflows step functions must be annotated with their type."
        )


def is_free_function(qualname: str) -> bool:
    """Whether a ``__qualname__`` names a free function rather than a method.

    A module-level function (``f``) or a function nested in one
    (``outer.<locals>.f``) is free; a method (``Cls.m``,
    ``outer.<locals>.Cls.m``) is not (see PEP 3155).

    Raises:
        ValueError: ``qualname`` is empty.
    """
    if not qualname:
        raise ValueError("The qualified name cannot be empty")
    parts = qualname.split(".")
    return len(parts) == 1 or parts[-2] == "<locals>"


def _get_param_types(param: inspect.Parameter, type_hints: dict[str, Any]) -> list[Any]:
    """The types a parameter is annotated with: ``[Any]`` if none, a union's members."""
    return _members(type_hints.get(param.name, param.annotation))


def _get_return_types(func: Callable[..., Any], localns: dict[str, Any] | None = None) -> list[Any]:
    """The types ``func`` is annotated to return: a union's members; ``[]`` if none."""
    hints = _resolve_type_hints(func, localns)
    if "return" not in hints:
        return []
    return _union_members(hints["return"])


def _members(annotation: Any) -> list[Any]:
    if annotation is inspect.Parameter.empty:
        return [Any]
    return _union_members(annotation)


def _union_members(annotation: Any) -> list[Any]:
    """A union's members with ``None`` left out (``X | None`` is ``[X]``), else ``[annotation]``."""
    if get_origin(annotation) in (Union, types.UnionType):
        return [member for member in get_args(annotation) if member is not type(None)]
    return [annotation]


def _is_context(annotation: Any) -> bool:
    # By name, as upstream, so that reading a signature needs no import of the context.
    target = get_origin(annotation) or annotation
    return getattr(target, "__name__", None) == "Context"


def _is_event_type(annotation: Any) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, Event)


def _resolve_type_hints(
    func: Callable[..., Any], localns: dict[str, Any] | None, *, include_extras: bool = False
) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func, localns=localns, include_extras=include_extras)
    except NameError as exc:
        missing = getattr(exc, "name", None)
        detail = f" Missing name: {missing}." if missing else ""
        name = getattr(func, "__qualname__", type(func).__name__)
        raise WorkflowValidationError(
            f"Failed to resolve type annotations for {name}.{detail} "
            "If you are using 'from __future__ import annotations' or string annotations, "
            "ensure referenced names are available in module scope or in the scope where "
            "the @step decorator is applied."
        ) from exc
