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

This module holds the codec itself and :class:`OpaqueEvent`. The name lookups
it relies on (``type_name``, stalkflow's own events, loaded subclasses) are in
:mod:`stalkflow.core.codec_types`; JSON text in and out, and the checked reading
of decoded fields, in :mod:`stalkflow.core.codec_json`. ``type_name`` is
importable from here too.

Example:
    >>> from stalkflow.events import StartEvent
    >>> codec = EventCodec.permissive()
    >>> wire = codec.dumps(codec.encode_event(StartEvent(topic="x")))
    >>> codec.decode_event("any", codec.loads(wire)).topic
    'x'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import PrivateAttr

from stalkflow.core.codec_json import Fields, dumps, error_from, kind_of, loads
from stalkflow.core.codec_types import FRAMEWORK_EVENTS, HUMAN_INPUT_BASES, find_loaded, type_name
from stalkflow.core.deliveries import Delivery, Waiter
from stalkflow.core.runs import RunRecord, RunStatus
from stalkflow.errors import EventCodecError
from stalkflow.events import Event, event_from_payload, event_to_payload

__all__ = ["EventCodec", "EventTypes", "type_name"]

#: For a workflow name, its registered event types keyed by ``"module.QualName"``.
EventTypes = Callable[[str], Mapping[str, type[Event]]]


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
            raise EventCodecError(f"An encoded event must be an object, not {kind_of(obj)}")
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
        found = FRAMEWORK_EVENTS.get(name) or self._registered(workflow).get(name)
        if found is None:
            bases = (Event,) if self._permissive else HUMAN_INPUT_BASES
            found = find_loaded(name, bases)
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
        fields = Fields(obj, "delivery")
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
            last_error=error_from(fields.get("last_error")),
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
        fields = Fields(obj, "waiter")
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
        fields = Fields(obj, "run record")
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
            error=error_from(fields.get("error")),
            hitl=fields.boolean("hitl"),
            routes={
                str(step): tuple(str(name) for name in names)
                for step, names in dict(fields.get("routes") or {}).items()
            },
        )

    # --- text (see ``codec_json``) --------------------------------------------------

    dumps = staticmethod(dumps)
    loads = staticmethod(loads)


def _no_workflows(name: str) -> Mapping[str, type[Event]]:
    raise LookupError(name)
