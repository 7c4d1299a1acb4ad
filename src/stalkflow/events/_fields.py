"""Field types for events that survive serialization: events, exceptions, classes.

A field annotated with one of the ``Serializable*`` types is dumped in a form
that names its class, and is rebuilt as the same type when read back. Class
names are resolved through the serializer that is decoding, and an exception
whose class cannot be rebuilt comes back as :class:`UnreconstructedException`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator

from stalkflow.context.serializers import (
    current_serializer,
    qualified_name_of,
    resolve_qualified_name,
)
from stalkflow.events._base import Event


class UnreconstructedException(Exception):
    """Stands in for a serialized exception whose class cannot be rebuilt.

    A serialized exception keeps only its type name and message. When that type
    is not already imported, is not an ``Exception`` subclass, or cannot be built
    from the message alone, this is returned instead, so reading never fails.
    ``str()`` is the original message; ``original_type`` names the lost type and
    is written back out when the exception is serialized again.
    """

    # Public as stalkflow.events.UnreconstructedException, the name written
    # into serialized data; keep it independent of where the class is defined.
    __module__ = "stalkflow.events"

    def __init__(self, message: str, *, original_type: str | None = None) -> None:
        super().__init__(message)
        self.original_type = original_type

    def __repr__(self) -> str:
        return f"UnreconstructedException({self.args[0]!r}, original_type={self.original_type!r})"


def _event_to_json(event: Event | None) -> Any:
    return None if event is None else current_serializer().serialize_value(event)


def _event_from_json(data: Any) -> Event:
    event = data if isinstance(data, Event) else current_serializer().deserialize_value(data)
    if not isinstance(event, Event):
        raise ValueError("expected a serialized Event")
    return event


def _optional_event_from_json(data: Any) -> Event | None:
    return None if data is None else _event_from_json(data)


def _exception_to_json(exc: BaseException | None) -> dict[str, str] | None:
    if exc is None:
        return None
    name = qualified_name_of(type(exc))
    if isinstance(exc, UnreconstructedException) and exc.original_type:
        name = exc.original_type
    return {"exception_type": name, "exception_message": str(exc)}


def _exception_from_json(data: Any) -> Exception:
    if isinstance(data, Exception):
        return data
    if not isinstance(data, dict) or not isinstance(data.get("exception_type"), str):
        raise ValueError("expected {'exception_type': str, 'exception_message': str}")
    type_name: str = data["exception_type"]
    message = str(data.get("exception_message", ""))
    try:
        # Never import here: the name comes from data, and importing runs code.
        exc_cls = resolve_qualified_name(type_name, allow_import=False)
    except (ImportError, AttributeError, ValueError):
        exc_cls = None
    if exc_cls is UnreconstructedException:
        return UnreconstructedException(message)
    # Only exception classes are called: a name like "os.system" must not be.
    if isinstance(exc_cls, type) and issubclass(exc_cls, Exception):
        try:
            rebuilt: Exception = exc_cls(message)
            return rebuilt
        except Exception:
            pass  # needs more than a message; fall through to the stand-in
    return UnreconstructedException(message, original_type=type_name)


def _optional_exception_from_json(data: Any) -> Exception | None:
    return None if data is None else _exception_from_json(data)


def _event_type_to_json(event_type: type[Event]) -> str:
    return qualified_name_of(event_type)


def _event_type_from_json(data: Any) -> type[Event]:
    found = data if isinstance(data, type) else current_serializer().resolve_class(str(data))
    if not issubclass(found, Event):
        raise ValueError(f"{data!r} is not an Event class")
    return found


#: An event field stored with its class name, so it is rebuilt as the same type.
SerializableEvent = Annotated[
    Event,
    PlainSerializer(_event_to_json, return_type=Any),
    PlainValidator(_event_from_json),
]
#: Like :data:`SerializableEvent`, allowing None.
SerializableOptionalEvent = Annotated[
    Event | None,
    PlainSerializer(_event_to_json, return_type=Any),
    PlainValidator(_optional_event_from_json),
]
#: An exception field stored as ``{"exception_type", "exception_message"}``.
SerializableException = Annotated[
    Exception,
    PlainSerializer(_exception_to_json, return_type=dict[str, Any]),
    PlainValidator(_exception_from_json),
]
#: Like :data:`SerializableException`, allowing None.
SerializableOptionalException = Annotated[
    Exception | None,
    PlainSerializer(_exception_to_json, return_type=Any),
    PlainValidator(_optional_exception_from_json),
]
#: An event class stored as its ``"module.QualName"``.
SerializableEventType = Annotated[
    type[Event],
    PlainSerializer(_event_type_to_json, return_type=str),
    PlainValidator(_event_type_from_json),
]
