"""Helpers over the event types in step configs, shared by the structural checks.

A step config's types may be anything an annotation allows (``list[int]``,
``Any``, ``None``): these answer safely for all of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stalkflow.decorators import StepConfig

_NoneType = type(None)


def is_subclass(candidate: Any, bases: type | tuple[type, ...]) -> bool:
    """``issubclass`` that answers False for non-classes (``list[int]``, ``Any`` ...)."""
    try:
        return isinstance(candidate, type) and issubclass(candidate, bases)
    except TypeError:
        return False


def type_names(types: Iterable[Any]) -> str:
    """The types' names, sorted and comma-separated, for messages."""
    return ", ".join(sorted(_type_name(t) for t in types))


def _type_name(candidate: Any) -> str:
    return str(getattr(candidate, "__name__", candidate))


def returned(cfg: StepConfig) -> list[Any]:
    """The types a step returns, ``None`` left out."""
    return [t for t in cfg.return_types if t is not _NoneType]
