"""Serializers that turn context values (state, events) into strings and back.

A serializer is what a context uses to persist its state and the events it holds.
:class:`JsonSerializer` is the default: plain JSON, plus a small envelope that
remembers the class of a pydantic model (``{"__is_pydantic": true, "value": ...,
"qualified_name": "module.Class"}``) or of a LlamaIndex component
(``"__is_component"``), so that those come back as the same type.
:class:`PickleSerializer` adds a base64 pickle fallback for values JSON cannot
hold; it must only read trusted data.

Reading an envelope means turning its ``qualified_name`` back into a class. By
default that may import the named module, as llama-index-workflows does; this is
meant for trusted data such as a run's own state. Untrusted input (the wire) is
read with ``allowed_types=[...]`` or ``import_modules=False`` instead.
"""

from __future__ import annotations

import base64
import contextvars
import importlib
import json
import pickle
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, get_origin

from pydantic import BaseModel

__all__ = [
    "BaseSerializer",
    "JsonPickleSerializer",
    "JsonSerializer",
    "PickleSerializer",
    "qualified_name_of",
    "resolve_qualified_name",
]

# Nested validators (an event field holding another event) cannot receive the
# serializer as an argument: pydantic calls them. The serializer that started the
# decoding is published here so they resolve class names the same way.
_active_serializer: contextvars.ContextVar[JsonSerializer | None] = contextvars.ContextVar(
    "stalkflow_active_serializer", default=None
)

# Classes stalkflow itself persists (StartEvent, StopEvent, ...). They must
# resolve even when a serializer restricts ``allowed_types`` to the user's types.
_framework_types: dict[str, type[Any]] = {}


def qualified_name_of(cls: type[Any]) -> str:
    """Return ``"module.QualName"``, the name under which ``cls`` is serialized.

    The ``__qualname__`` is used (upstream uses ``__name__``) so that a class
    nested in another class can be found again; for top-level classes the two
    are the same string.
    """
    return f"{cls.__module__}.{cls.__qualname__}"


def _names_for(cls: type[Any]) -> set[str]:
    # Data written by llama-index-workflows names classes by ``__name__``.
    return {qualified_name_of(cls), f"{cls.__module__}.{cls.__name__}"}


def register_framework_type(cls: type[Any]) -> None:
    """Make ``cls`` resolvable by every serializer (stalkflow-internal).

    ``stalkflow.events`` registers its event classes so that a context written
    with them can always be read back, whatever ``allowed_types`` says.
    """
    for name in _names_for(cls):
        _framework_types[name] = cls


def current_serializer() -> JsonSerializer:
    """Return the serializer that is decoding right now, or a default one.

    Used by pydantic validators that rebuild nested values (stalkflow-internal).
    """
    return _active_serializer.get() or _DEFAULT_SERIALIZER


def _import_or_none(module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # "pkg.mod.Outer" is first tried as a module. Only a miss on that name
        # (or on one of its parents) means "try a shorter prefix"; a module that
        # exists but fails to import its own dependencies is a real error.
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            return None
        raise


def resolve_qualified_name(name: str, *, allow_import: bool = True) -> Any:
    """Return the object that ``"module.Attr"`` (or ``"module.Outer.Inner"``) names.

    The longest prefix that is a module wins; the rest is looked up attribute by
    attribute. With ``allow_import=False`` only modules already in
    ``sys.modules`` are considered, so resolving a name never runs module code.

    Raises:
        ValueError: ``name`` is not a dotted name, or its attribute path goes
            through a dunder (``__import__``, ``__class__``).
        ImportError: no prefix of ``name`` is a module (that may be imported).
        AttributeError: the module has no such attribute.
    """
    parts = name.split(".") if isinstance(name, str) else []
    if len(parts) < 2 or not all(parts):
        raise ValueError(f"Qualified name must look like 'module.attribute', got {name!r}")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        module = sys.modules.get(module_name)
        if module is None and allow_import:
            module = _import_or_none(module_name)
        if module is None:
            continue
        found: Any = module
        for attribute in parts[cut:]:
            if attribute.startswith("__") and attribute.endswith("__"):
                # Names such as "builtins.__import__" have no business in data.
                raise ValueError(f"Qualified name {name!r} goes through a dunder attribute")
            found = getattr(found, attribute)
        return found
    how = "imported" if allow_import else "found among the imported modules"
    raise ImportError(f"No module for {name!r} could be {how}")


class BaseSerializer(ABC):
    """Turns any value a context holds into a string and back.

    Implement it to store state in another format; the context only ever calls
    these two methods (and :meth:`validation_context` around decoding).
    """

    @abstractmethod
    def serialize(self, value: Any) -> str:
        """Encode ``value`` as a string; raise ``ValueError`` if it cannot be."""

    @abstractmethod
    def deserialize(self, value: str) -> Any:
        """Rebuild the value that :meth:`serialize` encoded."""

    @contextmanager
    def validation_context(self) -> Iterator[None]:
        """Run a block with this serializer in charge of nested decoding.

        The base version does nothing; serializers that resolve class names
        override it.
        """
        yield


class JsonSerializer(BaseSerializer):
    """JSON serializer that keeps the type of pydantic models and components.

    Dicts and lists are walked recursively; pydantic models (events included) and
    LlamaIndex components are wrapped in an envelope naming their class; anything
    else must be something ``json.dumps`` accepts.

    Args:
        allowed_types: When given, only these classes (or legacy dotted names)
            may be rebuilt from an envelope; any other name raises
            ``ValueError``. Classes listed here are found without importing.
        import_modules: When False, a class name resolves only if its module is
            already imported, so decoding never runs module code.

    Example:
        >>> s = JsonSerializer()
        >>> s.deserialize(s.serialize({"x": 1, "y": [2, 3]}))
        {'x': 1, 'y': [2, 3]}
    """

    def __init__(
        self,
        *,
        allowed_types: Iterable[type[Any] | str] | None = None,
        import_modules: bool = True,
    ) -> None:
        self._import_modules = import_modules
        self._allowed_entries: tuple[type[Any] | str, ...] | None = None
        self._allowed_names: frozenset[str] | None = None
        self._registered: dict[str, type[Any]] = {}
        if allowed_types is None:
            return
        self._allowed_entries = tuple(allowed_types)
        names: set[str] = set()
        for entry in self._allowed_entries:
            if isinstance(entry, str):
                names.add(entry)
                continue
            if not isinstance(entry, type) or get_origin(entry) is not None:
                raise TypeError(f"allowed_types entries must be classes or names, got {entry!r}")
            for name in _names_for(entry):
                claimed = self._registered.setdefault(name, entry)
                if claimed is not entry:
                    # A record only carries the name, so it could not say which one it meant.
                    raise ValueError(f"{claimed!r} and {entry!r} both serialize as {name!r}")
                names.add(name)
        self._allowed_names = frozenset(names)

    def with_types(self, *classes: type[Any]) -> JsonSerializer:
        """Return a serializer that also accepts ``classes`` (self if unrestricted)."""
        if self._allowed_entries is None:
            return self
        return JsonSerializer(
            allowed_types=(*self._allowed_entries, *classes),
            import_modules=self._import_modules,
        )

    @contextmanager
    def validation_context(self) -> Iterator[None]:
        """Let validators of nested values resolve class names with this serializer."""
        token = _active_serializer.set(self)
        try:
            yield
        finally:
            _active_serializer.reset(token)

    def resolve_class(self, qualified_name: str) -> type[Any]:
        """Return the class an envelope names, honouring this serializer's limits.

        Raises:
            ValueError: the name is not allowed, or does not name a class.
            ImportError, AttributeError: nothing exists under that name.
        """
        known = self._registered.get(qualified_name) or _framework_types.get(qualified_name)
        if known is not None:
            return known
        if self._allowed_names is not None and qualified_name not in self._allowed_names:
            raise ValueError(
                f"Class {qualified_name} is not in this serializer's allowed_types; "
                f"pass JsonSerializer(allowed_types=[...]) including it"
            )
        found = resolve_qualified_name(qualified_name, allow_import=self._import_modules)
        if not isinstance(found, type):
            raise ValueError(f"{qualified_name} does not name a class")
        return found

    def serialize_value(self, value: Any) -> Any:
        """Return a JSON-ready form of ``value``, with envelopes for typed objects.

        Components are checked before pydantic models because a LlamaIndex
        component is also a pydantic model, and must be rebuilt with
        ``from_dict``. The check is on the class, so an event with a dynamic key
        called ``class_name`` is not mistaken for a component.
        """
        if hasattr(type(value), "class_name"):
            return {
                "__is_component": True,
                "value": value.to_dict(),
                "qualified_name": qualified_name_of(type(value)),
            }
        if isinstance(value, BaseModel):
            return {
                "__is_pydantic": True,
                "value": value.model_dump(mode="json"),
                "qualified_name": qualified_name_of(type(value)),
            }
        if isinstance(value, dict):
            return {key: self.serialize_value(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.serialize_value(item) for item in value]
        return value

    def serialize(self, value: Any) -> str:
        """Encode ``value`` as a JSON string.

        Raises:
            ValueError: ``Failed to serialize value: <type>: <value>`` when the
                value (or something inside it) is not JSON-compatible.
        """
        try:
            return json.dumps(self.serialize_value(value))
        except Exception as exc:
            raise ValueError(f"Failed to serialize value: {type(value)}: {value!s}") from exc

    def deserialize_value(self, data: Any) -> Any:
        """Rebuild what :meth:`serialize_value` produced, walking dicts and lists."""
        if isinstance(data, list):
            return [self.deserialize_value(item) for item in data]
        if not isinstance(data, dict):
            return data
        name = data.get("qualified_name")
        if data.get("__is_pydantic") and name and isinstance(name, str):
            model_cls = self.resolve_class(name)
            if not issubclass(model_cls, BaseModel):
                raise ValueError(f"{name} is not a pydantic model")
            with self.validation_context():
                return model_cls.model_validate(data.get("value"))
        if data.get("__is_component") and name and isinstance(name, str):
            component_cls = self.resolve_class(name)
            if not callable(getattr(component_cls, "from_dict", None)):
                raise ValueError(f"{name} has no from_dict() to rebuild a component")
            with self.validation_context():
                return component_cls.from_dict(data.get("value"))
        return {key: self.deserialize_value(item) for key, item in data.items()}

    def deserialize(self, value: str) -> Any:
        """Parse a JSON string and rebuild the typed objects inside it."""
        return self.deserialize_value(json.loads(value))


class PickleSerializer(JsonSerializer):
    """JSON when possible, base64-encoded pickle for everything else.

    Values JSON can hold are written as JSON, so they stay readable; the rest
    (arbitrary objects) is pickled. Reading tries pickle first, then JSON.

    Warning:
        Unpickling runs arbitrary code. Only read data this program wrote.
    """

    def serialize(self, value: Any) -> str:
        """Encode as JSON, or as base64 pickle if JSON cannot hold ``value``."""
        try:
            return super().serialize(value)
        except ValueError:
            pass
        try:
            return base64.b64encode(pickle.dumps(value)).decode("ascii")
        except Exception as exc:
            raise ValueError(f"Failed to serialize value: {type(value)}: {value!s}") from exc

    def deserialize(self, value: str) -> Any:
        """Decode base64 pickle, falling back to JSON."""
        try:
            # validate=True: a JSON document is never silently "repaired" into bytes.
            raw = base64.b64decode(value, validate=True)
            return pickle.loads(raw)
        except Exception:
            return super().deserialize(value)


#: The former name of :class:`PickleSerializer`, kept for old imports.
JsonPickleSerializer = PickleSerializer

_DEFAULT_SERIALIZER = JsonSerializer()
