"""The wire codec: events, deliveries, waiters and run records as JSON.

Everything that crosses a process boundary (a broker message, a value in the
Redis store) goes through :class:`EventCodec`. It is pure: it builds and reads
JSON-compatible dicts and strings, and does no I/O.

An event travels as ``{"type": "module.QualName", "data": <event_to_payload>}``.
Reading one never imports anything. The class named by ``"type"`` is taken,
in this order, from:

1. the types the caller vouches for (``known=``: live classes it holds);
2. stalkflow's own events (``StartEvent``, ``StopEvent``, ``StepStateChanged`` ...);
3. the event types registered for the workflow (``lookup(workflow)``; a worker
   passes ``lambda name: registry.get(name)._plan().event_types``);
4. already-loaded subclasses of ``HumanResponseEvent`` and
   ``InputRequiredEvent`` (a client may answer a run with its own class);
5. with :meth:`EventCodec.permissive` only: any already-loaded ``Event`` subclass.

Any other name is rejected with :class:`~stalkflow.errors.EventCodecError`
naming it: ``"os.system"`` or ``"evil_module.Payload"`` is never imported, and
nothing in a message can make the codec run code. Workers and servers use the
strict codec built from their registry; the permissive one is for tests and
clients that have no registry and only read back what they wrote.

Example:
    >>> from stalkflow.events import StartEvent
    >>> codec = EventCodec.permissive()
    >>> wire = codec.dumps(codec.encode_event(StartEvent(topic="x")))
    >>> codec.decode_event("any", codec.loads(wire)).topic
    'x'
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pydantic import PrivateAttr

from stalkflow.core.deliveries import Delivery, ErrorInfo, Waiter
from stalkflow.core.names import qualified_name
from stalkflow.core.runs import RunRecord, RunStatus
from stalkflow.errors import EventCodecError
from stalkflow.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    event_from_payload,
    event_to_payload,
)

__all__ = ["EventCodec", "EventTypes", "type_name"]

#: For a workflow name, its registered event types keyed by ``"module.QualName"``.
EventTypes = Callable[[str], Mapping[str, type[Event]]]

# Subclasses a client may bring for human input (upstream lets it send its own).
_HUMAN_INPUT_BASES: tuple[type[Event], ...] = (HumanResponseEvent, InputRequiredEvent)


def type_name(cls: type[Any]) -> str:
    """The name a class travels under: ``"module.QualName"`` (see ``core.names``)."""
    return qualified_name(cls)


def _framework_events() -> dict[str, type[Event]]:
    import stalkflow.events as events_module

    found: dict[str, type[Event]] = {}
    for value in vars(events_module).values():
        if (
            isinstance(value, type)
            and issubclass(value, Event)
            and value.__module__ == events_module.__name__
        ):
            found[type_name(value)] = value
    return found


_FRAMEWORK_EVENTS = _framework_events()


def _loaded_subclasses(base: type[Event]) -> Iterator[type[Event]]:
    """Every live subclass of ``base``: classes already defined, so already imported."""
    pending = list(base.__subclasses__())
    seen: set[type[Event]] = set()
    while pending:
        cls = pending.pop()
        if cls in seen:
            continue
        seen.add(cls)
        yield cls
        pending.extend(cls.__subclasses__())


def _find_loaded(name: str, bases: tuple[type[Event], ...]) -> type[Event] | None:
    for base in bases:
        if type_name(base) == name:
            return base
        for cls in _loaded_subclasses(base):
            if type_name(cls) == name:
                return cls
    return None


class OpaqueEvent(Event):
    """An event of a type unknown in this process, carried unchanged.

    Only made by ``decode_event(..., opaque=True)``; it encodes back to exactly
    the type name and data it was decoded from, so a worker that knows the type
    rebuilds the real event.
    """

    _opaque_type: str = PrivateAttr(default="")
    _opaque_data: dict[str, Any] = PrivateAttr(default_factory=dict)

    @classmethod
    def of(cls, type_name: str, data: Mapping[str, Any]) -> OpaqueEvent:
        event = cls()
        event._opaque_type = type_name
        event._opaque_data = dict(data)
        return event

    @property
    def opaque_type(self) -> str:
        return self._opaque_type

    @property
    def opaque_data(self) -> Mapping[str, Any]:
        return self._opaque_data


class EventCodec:
    """Encodes and decodes the values of a run as JSON, accepting known event types only.

    Args:
        lookup: For a workflow name, the event types registered for it (keyed
            by ``"module.QualName"``). It may raise ``LookupError`` for an
            unknown workflow; that workflow then has no registered types.
    """

    def __init__(self, lookup: EventTypes) -> None:
        self._lookup = lookup
        self._permissive = False

    @classmethod
    def permissive(cls) -> EventCodec:
        """A codec that also accepts any already-loaded ``Event`` subclass.

        For tests and clients that have no workflow registry. It still never
        imports a module; workers use the strict codec built from their registry.
        """
        codec = cls(_no_workflows)
        codec._permissive = True
        return codec

    # --- events -------------------------------------------------------------------

    def encode_event(self, ev: Event) -> dict[str, Any]:
        """``{"type": "module.QualName", "data": event_to_payload(ev)}``.

        Raises:
            EventCodecError: the event holds a value JSON cannot represent.
        """
        if not isinstance(ev, Event):
            raise EventCodecError(f"Only events can be encoded, not {type(ev).__name__}")
        if isinstance(ev, OpaqueEvent):
            return {"type": ev.opaque_type, "data": dict(ev.opaque_data)}
        return {"type": type_name(type(ev)), "data": event_to_payload(ev)}

    def decode_event(
        self,
        workflow: str,
        obj: Any,
        *,
        known: Mapping[str, type[Event]] | None = None,
        opaque: bool = False,
    ) -> Event:
        """Rebuild an event of ``workflow`` from :meth:`encode_event` output.

        ``known`` adds classes the caller holds and vouches for (for example
        the ``expected`` types of ``collect_events``). With ``opaque``, an event
        of a type unknown here comes back as an ``OpaqueEvent`` that re-encodes
        exactly as it came: a process that only carries it (answering a waiter
        of a workflow it never imported) needs no class.

        Raises:
            EventCodecError: the value is malformed, fails validation, or names
                a type this codec does not accept (which is never imported).
        """
        if not isinstance(obj, dict):
            raise EventCodecError(f"An encoded event must be an object, not {_kind(obj)}")
        name = obj.get("type")
        data = obj.get("data")
        if not isinstance(name, str) or not isinstance(data, dict):
            raise EventCodecError("An encoded event needs a string 'type' and an object 'data'")
        try:
            kind = self.event_type(workflow, name, known=known)
        except EventCodecError:
            if not opaque:
                raise
            return OpaqueEvent.of(name, data)
        return event_from_payload(kind, data)

    def event_type(
        self, workflow: str, name: str, *, known: Mapping[str, type[Event]] | None = None
    ) -> type[Event]:
        """The event class that ``name`` stands for in ``workflow``; never imports.

        Raises:
            EventCodecError: the name is not an event type this codec accepts.
        """
        if known is not None and name in known:
            return known[name]
        found = _FRAMEWORK_EVENTS.get(name) or self._registered(workflow).get(name)
        if found is None:
            bases = (Event,) if self._permissive else _HUMAN_INPUT_BASES
            found = _find_loaded(name, bases)
        if found is None:
            raise EventCodecError(
                f"Unknown event type {name!r} for workflow {workflow!r}: it is not registered "
                "for that workflow, and event types are never imported from a message"
            )
        return found

    def _registered(self, workflow: str) -> Mapping[str, type[Event]]:
        try:
            return self._lookup(workflow)
        except LookupError:
            return {}

    # --- deliveries and waiters -----------------------------------------------------

    def encode_delivery(self, d: Delivery) -> dict[str, Any]:
        return {
            "run_id": d.run_id,
            "workflow": d.workflow,
            "step": d.step,
            "event": self.encode_event(d.event),
            "delivery_id": d.delivery_id,
            "attempt": d.attempt,
            "first_attempt_at": d.first_attempt_at,
            "last_error": None if d.last_error is None else d.last_error.to_json(),
            "last_failed_at": d.last_failed_at,
            "resolved": {
                waiter_id: None if ev is None else self.encode_event(ev)
                for waiter_id, ev in d.resolved.items()
            },
            "expires_waiter": d.expires_waiter,
            "recoveries": dict(d.recoveries),
        }

    def decode_delivery(self, obj: Any, *, opaque: bool = False) -> Delivery:
        """Rebuild a delivery; its events are decoded for its own workflow."""
        fields = _Fields(obj, "delivery")
        workflow = fields.text("workflow")
        resolved = fields.mapping("resolved")
        return Delivery(
            run_id=fields.text("run_id"),
            workflow=workflow,
            step=fields.text("step"),
            event=self.decode_event(workflow, fields.get("event"), opaque=opaque),
            delivery_id=fields.text("delivery_id"),
            attempt=fields.integer("attempt"),
            first_attempt_at=fields.optional_number("first_attempt_at"),
            last_error=_error_from(fields.get("last_error")),
            last_failed_at=fields.optional_number("last_failed_at"),
            resolved={
                str(waiter_id): None
                if ev is None
                else self.decode_event(workflow, ev, opaque=opaque)
                for waiter_id, ev in resolved.items()
            },
            expires_waiter=fields.optional_text("expires_waiter"),
            recoveries={
                str(handler): int(count)
                for handler, count in dict(fields.get("recoveries") or {}).items()
            },
        )

    def encode_waiter(self, w: Waiter) -> dict[str, Any]:
        return {
            "waiter_id": w.waiter_id,
            "event_type": type_name(w.event_type),
            "waiter_event": None if w.waiter_event is None else self.encode_event(w.waiter_event),
            "requirements": dict(w.requirements),
            "delivery": self.encode_delivery(w.delivery),
            "timeout_s": w.timeout_s,
        }

    def decode_waiter(self, obj: Any, *, opaque: bool = False) -> Waiter:
        """Rebuild a waiter; with ``opaque``, types unknown here are carried, not refused.

        A waiter for a type unknown here gets ``OpaqueEvent`` as its type, which
        no event sent from this process can match.
        """
        fields = _Fields(obj, "waiter")
        delivery = self.decode_delivery(fields.get("delivery"), opaque=opaque)
        try:
            event_type = self.event_type(delivery.workflow, fields.text("event_type"))
        except EventCodecError:
            if not opaque:
                raise
            event_type = OpaqueEvent
        return Waiter(
            waiter_id=fields.text("waiter_id"),
            event_type=event_type,
            waiter_event=None
            if fields.get("waiter_event") is None
            else self.decode_event(delivery.workflow, fields.get("waiter_event"), opaque=opaque),
            requirements=dict(fields.mapping("requirements")),
            delivery=delivery,
            timeout_s=fields.optional_number("timeout_s"),
        )

    # --- run records ----------------------------------------------------------------

    def encode_run(self, run: RunRecord) -> dict[str, Any]:
        return {
            "run_id": run.run_id,
            "workflow": run.workflow,
            "status": run.status.value,
            "created_at": run.created_at,
            "updated_at": run.updated_at,
            "deadline": run.deadline,
            "timeout_s": run.timeout_s,
            "result": None if run.result is None else self.encode_event(run.result),
            "error": None if run.error is None else run.error.to_json(),
            "hitl": run.hitl,
            "routes": {step: list(names) for step, names in run.routes.items()},
        }

    def decode_run(self, obj: Any) -> RunRecord:
        fields = _Fields(obj, "run record")
        workflow = fields.text("workflow")
        result = fields.get("result")
        try:
            status = RunStatus(fields.text("status"))
        except ValueError as exc:
            raise EventCodecError(f"Unknown run status in a run record: {exc}") from None
        return RunRecord(
            run_id=fields.text("run_id"),
            workflow=workflow,
            status=status,
            created_at=fields.number("created_at"),
            updated_at=fields.number("updated_at"),
            deadline=fields.optional_number("deadline"),
            timeout_s=fields.optional_number("timeout_s"),
            result=None if result is None else self.decode_event(workflow, result),
            error=_error_from(fields.get("error")),
            hitl=fields.boolean("hitl"),
            routes={
                str(step): tuple(str(name) for name in names)
                for step, names in dict(fields.get("routes") or {}).items()
            },
        )

    # --- text -----------------------------------------------------------------------

    @staticmethod
    def dumps(obj: Any) -> str:
        """Compact JSON text.

        Raises:
            EventCodecError: ``obj`` holds a value JSON cannot represent.
        """
        try:
            return json.dumps(obj, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise EventCodecError(f"Cannot encode as JSON: {exc}") from exc

    @staticmethod
    def loads(text: str | bytes) -> Any:
        """Parse JSON text; anything else (pickle bytes among them) is refused.

        Raises:
            EventCodecError: the text is not UTF-8 JSON.
        """
        try:
            if isinstance(text, (bytes, bytearray)):
                text = bytes(text).decode("utf-8")
            if not isinstance(text, str):
                raise EventCodecError(f"Expected JSON text, got {_kind(text)}")
            return json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EventCodecError(
                f"Not a JSON document (pickle is never accepted): {exc}"
            ) from None


def _no_workflows(name: str) -> Mapping[str, type[Event]]:
    raise LookupError(name)


def _kind(value: Any) -> str:
    return type(value).__name__


def _error_from(value: Any) -> ErrorInfo | None:
    if value is None:
        return None
    fields = _Fields(value, "error")
    fields.text("type_name")
    fields.text("message")
    fields.optional_text("step")
    fields.optional_text("traceback")
    return ErrorInfo.from_json(value)


class _Fields:
    """Typed access to the fields of a decoded JSON object, failing with EventCodecError."""

    def __init__(self, obj: Any, what: str) -> None:
        if not isinstance(obj, dict):
            raise EventCodecError(f"An encoded {what} must be an object, not {_kind(obj)}")
        self._obj: dict[str, Any] = obj
        self._what = what

    def get(self, name: str) -> Any:
        if name not in self._obj:
            raise EventCodecError(f"An encoded {self._what} lacks the field {name!r}")
        return self._obj[name]

    def _bad(self, name: str, expected: str) -> EventCodecError:
        got = _kind(self._obj.get(name))
        return EventCodecError(f"Field {name!r} of a {self._what} must be {expected}, not {got}")

    def text(self, name: str) -> str:
        value = self.get(name)
        if not isinstance(value, str):
            raise self._bad(name, "a string")
        return value

    def optional_text(self, name: str) -> str | None:
        value = self._obj.get(name)
        if value is not None and not isinstance(value, str):
            raise self._bad(name, "a string or null")
        return value

    def integer(self, name: str) -> int:
        value = self.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(name, "an integer")
        return value

    def boolean(self, name: str) -> bool:
        value = self.get(name)
        if not isinstance(value, bool):
            raise self._bad(name, "a boolean")
        return value

    def number(self, name: str) -> float:
        value = self.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._bad(name, "a number")
        return float(value)

    def optional_number(self, name: str) -> float | None:
        value = self._obj.get(name)
        if value is None:
            return None
        return self.number(name)

    def mapping(self, name: str) -> dict[str, Any]:
        value = self.get(name)
        if not isinstance(value, dict):
            raise self._bad(name, "an object")
        return value
