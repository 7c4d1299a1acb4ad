"""The wire codec: an event as a JSON-compatible dict, and back.

stalkflow's transport moves an event between processes as its class name plus
:func:`event_to_payload`'s dict; :func:`event_from_payload` rebuilds it as the
class the receiver chose.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import to_jsonable_python

from stalkflow.context.serializers import JsonSerializer
from stalkflow.errors import EventCodecError
from stalkflow.events._base import _FIELDS_ONLY, Event


def event_to_payload(ev: Event) -> dict[str, Any]:
    """Encode ``ev`` as a JSON-compatible dict (its class is sent separately).

    Declared fields are dumped in JSON mode. Dynamic keys go under ``"_data"`` and
    a StopEvent's result under ``"result"``; pydantic models among those keep
    their type through the serializer's envelope. Other values arrive as their
    JSON form (a tuple comes back as a list, a datetime as a string).

    Raises:
        EventCodecError: a field or value cannot be represented in JSON.
    """
    codec = JsonSerializer()
    try:
        payload: dict[str, Any] = ev.model_dump(mode="json", context={_FIELDS_ONLY: ev})
        for key, value in ev._dump_extras().items():
            payload[key] = to_jsonable_python(codec.serialize_value(value))
    except (ValueError, TypeError) as exc:
        raise EventCodecError(f"Cannot encode {type(ev).__name__}: {exc}") from exc
    return payload


def event_from_payload(cls: type[Event], payload: dict[str, Any]) -> Event:
    """Rebuild an instance of exactly ``cls`` from :func:`event_to_payload` output.

    The caller chooses ``cls`` (from the workflow's own event types); nothing in
    the payload can choose another event class. Typed values inside the payload
    are rebuilt only from classes whose module is already imported, so decoding
    never imports a module.

    Raises:
        EventCodecError: the payload is malformed or fails validation.
    """
    if not isinstance(payload, dict):
        raise EventCodecError(f"An event payload must be a dict, not {type(payload).__name__}")
    # Imported here: stalkflow.events defines StopEvent and imports this module.
    from stalkflow.events import StopEvent

    codec = JsonSerializer(import_modules=False)
    arguments = dict(payload)
    try:
        dynamic = arguments.pop("_data", None) or {}
        if not isinstance(dynamic, dict):
            raise EventCodecError("'_data' of an event payload must be a dict")
        arguments["_data"] = codec.deserialize_value(dynamic)
        if issubclass(cls, StopEvent) and "result" in arguments:
            arguments["result"] = codec.deserialize_value(arguments["result"])
        with codec.validation_context():
            event = cls(**arguments)
    except EventCodecError:
        raise
    except (ValueError, TypeError, AttributeError, LookupError, ImportError) as exc:
        raise EventCodecError(f"Cannot decode a {cls.__name__} payload: {exc}") from exc
    return event
