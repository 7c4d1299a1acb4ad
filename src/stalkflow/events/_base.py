"""The dict-like pydantic model that events are built on, and the base Event.

:class:`DictLikeModel` validates declared fields and keeps undeclared keywords
as dynamic keys; :class:`Event` is the base class of every workflow event.
Both are public as ``stalkflow.events.DictLikeModel`` and ``stalkflow.events.Event``.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    PrivateAttr,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
)

# A serialization context carrying this key, mapped to an event, asks that event
# for its declared fields only; the payload codec then adds the dynamic parts
# itself, in a form that keeps their types.
_FIELDS_ONLY = "stalkflow.fields_only"


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


class DictLikeModel(BaseModel):
    """A pydantic model that also behaves like a dict of dynamic keys.

    Constructor keywords are sorted three ways: declared fields are validated,
    names of private attributes (``_x``) are set as such, and everything else is
    kept in the private dict ``_data``. Dynamic keys support attribute access,
    ``[]``, ``get``, ``in``, ``keys``/``values``/``items``, ``len`` and iteration;
    ``model_dump()`` adds them under ``"_data"`` when there are any.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    _data: dict[str, Any] = PrivateAttr(default_factory=dict)

    def __init__(self, **params: Any) -> None:
        cls = type(self)
        declared: dict[str, Any] = {}
        private: dict[str, Any] = {}
        dynamic: dict[str, Any] = {}
        for key, value in params.items():
            if key in cls.model_fields:
                declared[key] = value
            elif key in cls.__private_attributes__:
                private[key] = value
            else:
                dynamic[key] = value
        super().__init__(**declared)
        for key, value in private.items():
            super().__setattr__(key, value)
        if dynamic:
            self._data.update(dynamic)

    def __getattr__(self, name: str) -> Any:
        cls = type(self)
        if name in cls.__private_attributes__ or name in cls.model_fields or _is_dunder(name):
            # Private attributes live outside __dict__; pydantic knows where.
            # Dunders are never dynamic keys: answering them from _data would
            # recurse while the instance is half built (copy, unpickle).
            return super().__getattr__(name)  # type: ignore[misc]
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"'{cls.__name__}' object has no attribute '{name}'") from None

    def __setattr__(self, name: str, value: Any) -> None:
        cls = type(self)
        if name in cls.__private_attributes__ or name in cls.model_fields:
            super().__setattr__(name, value)
        else:
            self._data[name] = value

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    # BaseModel iterates (field, value) pairs; a dict-like iterates its keys.
    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        return iter(self._data)

    def __bool__(self) -> bool:
        # With __len__ defined, an event without dynamic keys would be falsy,
        # and `if ev:` would silently skip it.
        return True

    def get(self, key: str, default: Any = None) -> Any:
        """Return the dynamic key ``key``, or ``default`` when it is absent."""
        return self._data.get(key, default)

    def keys(self) -> KeysView[str]:
        """Return the names of the dynamic keys."""
        return self._data.keys()

    def values(self) -> ValuesView[Any]:
        """Return the values of the dynamic keys."""
        return self._data.values()

    def items(self) -> ItemsView[str, Any]:
        """Return the dynamic ``(key, value)`` pairs."""
        return self._data.items()

    def to_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Return the dynamic keys (the live dict, not a copy); fields are not included."""
        return self._data

    def _dump_extras(self) -> dict[str, Any]:
        """Return what ``model_dump`` adds beyond the declared fields."""
        return {"_data": self._data} if self._data else {}

    @model_serializer(mode="wrap")
    def _dump_with_extras(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        dumped: dict[str, Any] = handler(self)
        context = info.context
        if isinstance(context, dict) and context.get(_FIELDS_ONLY) is self:
            return dumped
        dumped.update(self._dump_extras())
        return dumped


class Event(DictLikeModel):
    """Base class of every workflow event.

    Subclass it with typed fields; undeclared keywords become dynamic keys.

    Example:
        >>> class Scored(Event):
        ...     score: int
        >>> ev = Scored(score=3, source="test")
        >>> (ev.score, ev.source, ev["source"])
        (3, 'test', 'test')
    """

    # Defined here because the Serializable* field types need it before the
    # event classes of stalkflow.events can be defined. It still belongs to
    # stalkflow.events: users import it from there, and the name it is
    # serialized under ("stalkflow.events.Event") must not depend on the layout.
    __module__ = "stalkflow.events"
