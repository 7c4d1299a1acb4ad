"""Dotted state paths (``"a.b.0"``) over dicts, lists and models, as upstream reads them."""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 1000

_MISSING = object()


def split_path(path: str) -> list[str]:
    segments = path.split(".", MAX_DEPTH)
    if len(segments) > MAX_DEPTH:
        raise ValueError(f"Path length exceeds {MAX_DEPTH} segments")
    return segments


def _child(container: Any, segment: str) -> Any:
    """One step of traversal: dict key, then integer index, then attribute."""
    if isinstance(container, dict):
        return container[segment]
    try:
        index = int(segment)
    except ValueError:
        pass
    else:
        try:
            return container[index]
        except (TypeError, KeyError, IndexError):
            pass
    found, value = _dynamic_key(container, segment)
    if found:
        # A dynamic key of a DictState/Event wins over a method of the same name
        # ("items", "keys", "get"): the user stored it, so the user reads it.
        return value
    try:
        return getattr(container, segment)
    except AttributeError:
        getter = getattr(container, "get", None)
        if callable(getter):
            value = getter(segment, _MISSING)
            if value is not _MISSING:
                return value
        raise


def _dynamic_key(container: Any, segment: str) -> tuple[bool, Any]:
    """``(True, value)`` if ``segment`` is a dynamic (``_data``) key of a dict-like model.

    For a dict-like model (DictState, Event) a name that is neither a declared
    field nor a dynamic key is missing, even if a method has that name.
    """
    private = getattr(container, "__pydantic_private__", None)
    data = private.get("_data") if isinstance(private, dict) else None
    if not isinstance(data, dict):
        return False, None
    if segment in getattr(type(container), "model_fields", {}):
        return False, None
    if segment not in data:
        raise KeyError(segment)
    return True, data[segment]


def get_path(root: Any, path: str, default: Any = ...) -> Any:
    """The value at ``path``; ``default`` if given and the path is missing, else ``ValueError``."""
    if path == "":
        return root
    value = root
    try:
        for segment in split_path(path):
            value = _child(value, segment)
    except Exception as exc:
        if default is not Ellipsis:
            return default
        raise ValueError(f"Path '{path}' not found in state") from exc
    return value


def _assign(container: Any, segment: str, value: Any) -> None:
    if isinstance(container, dict):
        container[segment] = value
        return
    if isinstance(container, list):
        try:
            index = int(segment)
            container[index] = value
            return
        except (ValueError, IndexError):
            raise AttributeError(
                f"'{type(container).__name__}' object has no attribute '{segment}'"
            ) from None
    setattr(container, segment, value)


def set_path(root: Any, path: str, value: Any) -> None:
    """Set ``path`` to ``value`` in place, creating missing intermediate levels as dicts."""
    if path == "":
        raise ValueError("Path cannot be empty")
    segments = split_path(path)
    container = root
    for segment in segments[:-1]:
        try:
            container = _child(container, segment)
        except (KeyError, AttributeError, IndexError, TypeError):
            created: dict[str, Any] = {}
            _assign(container, segment, created)
            container = created
    _assign(container, segments[-1], value)
