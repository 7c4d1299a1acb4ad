"""Events in and out of the HTTP API, in upstream's envelope.

The envelope is ``{value, type, types, qualified_name}``.

Going out, any event becomes an :class:`~stalkflow.server.models.EventEnvelope`.
Coming in, an envelope is decoded only into an event type that its workflow
declares (the events its steps accept and return, its start and stop events,
the ``additional_events`` it was served with, and the human-input events):
the class is looked up among those by name, and a ``qualified_name`` is never
imported. That is the difference from upstream, whose deprecated
``qualified_name`` path imports whatever module the client names.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from stalkflow.context.serializers import JsonSerializer
from stalkflow.core.codec import type_name
from stalkflow.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
)
from stalkflow.server.models import EventEnvelope

__all__ = ["EnvelopeError", "EventCatalog", "envelope_of", "event_value"]

#: Accepted from clients for every workflow, as upstream's protocol does.
FRAMEWORK_EVENTS: tuple[type[Event], ...] = (
    StartEvent,
    StopEvent,
    InputRequiredEvent,
    HumanResponseEvent,
)


class EnvelopeError(ValueError):
    """An incoming event is malformed, fails validation, or is not declared by its workflow."""


def event_value(ev: Event) -> dict[str, Any]:
    """``ev.model_dump(mode="json")``; values JSON cannot hold are shown as their ``str``."""
    try:
        value = ev.model_dump(mode="json")
    except (PydanticSerializationError, TypeError, ValueError):
        value = to_jsonable_python(ev.model_dump(), fallback=str)
    return value if isinstance(value, dict) else {"value": value}


def _base_names(cls: type[Event]) -> list[str] | None:
    names: list[str] = []
    for base in cls.__mro__[1:]:
        if base is Event:
            break
        if isinstance(base, type) and issubclass(base, Event):
            names.append(base.__name__)
    return names or None


def envelope_of(ev: Event, *, include_qualified_name: bool = True) -> EventEnvelope:
    """The envelope the API shows for ``ev``."""
    cls = type(ev)
    return EventEnvelope(
        value=event_value(ev),
        qualified_name=type_name(cls) if include_qualified_name else None,
        type=cls.__name__,
        types=_base_names(cls),
    )


class EventCatalog:
    """The event types one served workflow accepts from clients, by name."""

    def __init__(self, types: Iterable[type[Event]]) -> None:
        self._by_qualified: dict[str, type[Event]] = {}
        for cls in [*FRAMEWORK_EVENTS, *types]:
            self._by_qualified.setdefault(type_name(cls), cls)
        self._by_name: dict[str, list[type[Event]]] = {}
        for cls in self._by_qualified.values():
            self._by_name.setdefault(cls.__name__, []).append(cls)

    @property
    def types(self) -> list[type[Event]]:
        return list(self._by_qualified.values())

    def resolve(self, name: str | None, qualified_name: str | None) -> type[Event]:
        """The declared class an envelope's ``type`` / ``qualified_name`` stand for.

        ``type`` is a class name (``"HumanResponseEvent"``); a ``qualified_name``
        picks among declared classes sharing that name, or, with no ``type``,
        names the class itself (matched exactly, else by its last part, so that
        a client's ``workflows.events.StartEvent`` means this workflow's StartEvent).

        Raises:
            EnvelopeError: nothing declared matches, or the match is ambiguous.
        """
        if name:
            candidates = self._by_name.get(name, [])
            if not candidates:
                expected = ", ".join(sorted(self._by_name))
                raise EnvelopeError(f"Invalid event type: {name}. Expected one of {expected}")
            if len(candidates) == 1:
                return candidates[0]
            exact = self._by_qualified.get(qualified_name or "")
            if exact is not None and exact in candidates:
                return exact
            raise EnvelopeError(
                f"Event type {name} is ambiguous for this workflow; give its qualified_name, "
                f"one of {', '.join(sorted(type_name(c) for c in candidates))}"
            )
        if qualified_name:
            exact = self._by_qualified.get(qualified_name)
            if exact is not None:
                return exact
            short = self._by_name.get(qualified_name.rsplit(".", 1)[-1], [])
            if len(short) == 1:
                return short[0]
            raise EnvelopeError(
                f"Event type {qualified_name} is not declared by this workflow. "
                "Register it with add_workflow(..., additional_events=[...])."
            )
        raise EnvelopeError("Invalid client data. Must have a type or a qualified name")

    def parse(self, data: Any, *, bare_as: type[Event] | None = None) -> Event:
        """Decode client data (an envelope, or its JSON text) into a declared event.

        With ``bare_as``, an object that has no ``value`` and lacks ``type`` or
        ``qualified_name`` is taken as the fields of a ``bare_as`` event (how
        clients send a start event).

        Raises:
            EnvelopeError: the data is not an object, names an undeclared type,
                or fails the event's validation.
        """
        if isinstance(data, str):
            with contextlib.suppress(json.JSONDecodeError):
                data = json.loads(data)
        if not isinstance(data, dict):
            raise EnvelopeError(
                "Failed to deserialize event. Must be a json object, or stringified json object"
            )
        qualified = data.get("qualified_name")
        name = data.get("type")
        bare = ("qualified_name" not in data or "type" not in data) and "value" not in data
        if bare_as is not None and bare:
            cls: type[Event] = bare_as
            value: Any = data
        else:
            if not isinstance(name, (str, type(None))) or not isinstance(
                qualified, (str, type(None))
            ):
                raise EnvelopeError("'type' and 'qualified_name' must be strings")
            cls = self.resolve(name, qualified)
            value = data["value"] if "value" in data else data.get("data")
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise EnvelopeError("Failed to deserialize event: 'value' must be an object")
        decoder = JsonSerializer(import_modules=False)
        try:
            with decoder.validation_context():
                return cls.model_validate(value)
        except (ValidationError, TypeError, ValueError, LookupError) as exc:
            raise EnvelopeError(f"Failed to deserialize event: {exc}") from None
