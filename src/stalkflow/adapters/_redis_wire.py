"""How the Redis store's values look inside Redis and in its Lua scripts' arguments.

Pure translation, no I/O: ``RedisWire`` turns ports values into the JSON specs
the scripts take, and script replies back into ports values, with an
:class:`~stalkflow.core.codec.EventCodec` for every event, delivery, waiter and
run record. The scripts never parse an encoded value: each travels as an opaque
string next to the few fields a script acts on (a delivery's id and step).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from stalkflow.core.codec import EventCodec, type_name
from stalkflow.core.collect import resumable_buffers
from stalkflow.core.deliveries import Delivery, Waiter
from stalkflow.core.runs import RunOutcome, RunRecord, RunStatus
from stalkflow.errors import BackendError, EventCodecError
from stalkflow.events import Event, StepState, StepStateChanged
from stalkflow.ports import (
    Begin,
    BeginStatus,
    Commit,
    CommitResult,
    DeliveryPolicy,
    Recovered,
    RunSeed,
    RunSnapshot,
    StateSnapshot,
    StreamEntry,
)

logger = logging.getLogger("stalkflow.redis")

#: The fields of a run hash that make up its record.
RECORD_FIELDS = ("record", "status", "updated_at", "outcome")


def as_list(value: Any) -> list[Any]:
    """A script reply as a list (the scripts return arrays)."""
    if not isinstance(value, list):
        raise BackendError(f"Unexpected reply from a Redis store script: {type(value).__name__}")
    return value


class RedisWire:
    """Encodes script arguments and decodes script replies for one store."""

    def __init__(
        self,
        codec: EventCodec,
        finished_ttl_s: float,
        policy: DeliveryPolicy | None = None,
        finished_channel: str | None = None,
    ) -> None:
        self.codec = codec
        self.finished_channel = finished_channel
        self._ttl_ms = max(1, round(finished_ttl_s * 1000))
        self.policy = policy or DeliveryPolicy()
        self.lease_ms = _ms(self.policy.lease_s)
        # a delivery never gets a shorter grace than a lease: sweeps look at a run
        # at least once a lease, and every deadline must be at least that far off
        self.grace_ms = max(self.lease_ms, _ms(self.policy.dispatch_grace_s))
        self._enqueued: dict[tuple[str, str], str] = {}

    # --- values ---------------------------------------------------------------------

    def dumps(self, obj: Any) -> str:
        return self.codec.dumps(obj)

    def event(self, ev: Event) -> str:
        return self.dumps(self.codec.encode_event(ev))

    def delivery(self, d: Delivery) -> dict[str, str]:
        """A delivery as the scripts handle it: id, step, encoded form, queued notice."""
        return {
            "id": d.delivery_id,
            "step": d.step,
            "json": self.dumps(self.codec.encode_delivery(d)),
            "enq": self._enqueued_notice(d.step, type(d.event).__name__),
        }

    def _enqueued_notice(self, step: str, event_name: str) -> str:
        # What the stream shows when a delivery waits for a num_workers slot
        # (as the memory store does).
        found = self._enqueued.get((step, event_name))
        if found is None:
            found = self.event(
                StepStateChanged(
                    name=step,
                    step_state=StepState.PREPARING,
                    worker_id="<enqueued>",
                    input_event_name=event_name,
                )
            )
            self._enqueued[(step, event_name)] = found
        return found

    def waiter(self, w: Waiter) -> dict[str, str]:
        """A waiter, with the re-run its step gets if it times out (pre-encoded)."""
        return {
            "id": w.waiter_id,
            "json": self.dumps(self.codec.encode_waiter(w)),
            "timeout": self.dumps(self.delivery(w.timeout_redelivery())),
        }

    def finish(self, outcome: RunOutcome) -> dict[str, str]:
        result = outcome.result
        spec = {
            "status": outcome.status.value,
            "now": repr(time.time()),
            "outcome": self.dumps(
                {
                    "result": None if result is None else self.codec.encode_event(result),
                    "error": None if outcome.error is None else outcome.error.to_json(),
                }
            ),
            "ttl_ms": str(self._ttl_ms),
        }
        if self.finished_channel is not None:
            spec["channel"] = self.finished_channel
        if outcome.terminal_event is not None:
            spec["terminal"] = self.event(outcome.terminal_event)
        return spec

    # --- script arguments ---------------------------------------------------------------

    def create_spec(self, run: RunRecord, seed: RunSeed) -> str:
        spec: dict[str, Any] = {
            "record": self.dumps(self.codec.encode_run(run)),
            "workflow": run.workflow,
            "updated_at": repr(run.updated_at),
            "hitl": "1" if run.hitl else "0",
            "caps": {step: str(cap) for step, cap in seed.caps.items()},
            "waiters": [self.waiter(w) for w in seed.waiters],
            "buffers": [
                [self.buffer_key(key), self.dumps(self._seed_buffer(events))]
                for key, events in seed.buffers.items()
            ],
            "deliveries": [self.delivery(d) for d in seed.deliveries],
            "grace_ms": self.grace_ms,
        }
        if seed.state is not None:
            spec["state"] = seed.state
        return self.dumps(spec)

    def _seed_buffer(self, events: Sequence[Event]) -> list[dict[str, str]]:
        return [
            {"d": f"seed-{i}", "t": type_name(type(ev)), "e": self.event(ev)}
            for i, ev in enumerate(events)
        ]

    def commit_spec(self, commit: Commit) -> str:
        spec: dict[str, Any] = {
            "routed": [self.delivery(d) for d in commit.routed],
            "resolved": [{"wid": wid, "d": self.delivery(d)} for wid, d in commit.resolved],
            "stream": [self.event(ev) for ev in commit.stream],
            "grace_ms": self.grace_ms,
        }
        if commit.token is not None:
            spec["tok"] = commit.token
        if commit.delivery is not None:
            spec["d"] = {
                "id": commit.delivery.delivery_id,
                "lid": commit.delivery.lineage_id,
                "step": commit.delivery.step,
            }
        if commit.retry is not None:
            retry = commit.retry
            spec["retry"] = {
                "id": retry.delivery_id,
                "json": self.dumps(self.codec.encode_delivery(retry)),
                "delay_ms": _ms(max(0.0, commit.retry_delay_s)),
                "stored": commit.retry_in_store,
            }
        if commit.waiter is not None:
            spec["waiter"] = self.waiter(commit.waiter)
            if commit.waiter_event is not None:
                spec["waiter"]["ev"] = self.event(commit.waiter_event)
        if commit.outcome is not None:
            spec["finish"] = self.finish(commit.outcome)
        return self.dumps(spec)

    def buffer_key(self, key: tuple[str, str]) -> str:
        return self.dumps(list(key))

    def collect_args(
        self,
        key: tuple[str, str],
        delivery_id: str,
        event: Event,
        expected: Sequence[type[Event]],
    ) -> list[str]:
        eligible = type(event) in expected
        return [
            self.buffer_key(key),
            delivery_id,
            "1" if eligible else "0",
            type_name(type(event)),
            self.event(event) if eligible else "",
            self.dumps([type_name(kind) for kind in expected]),
        ]

    # --- script replies -----------------------------------------------------------------

    def record(self, fields: Sequence[Any]) -> RunRecord:
        """A run record from its run hash's :data:`RECORD_FIELDS`."""
        record, status, updated_at, outcome = fields
        obj = self.codec.loads(record)
        obj["status"] = status
        obj["updated_at"] = float(updated_at)
        if outcome:
            obj.update(self.codec.loads(outcome))
        return self.codec.decode_run(obj)

    def released(self, pairs: Sequence[Any], known: Sequence[Delivery] = ()) -> list[Delivery]:
        """Released deliveries from ``[id, json]`` pairs; the ones the caller holds are reused."""
        by_id = {d.delivery_id: d for d in known}
        return [
            by_id.get(delivery_id) or self.codec.decode_delivery(self.codec.loads(json))
            for delivery_id, json in pairs
        ]

    def commit_result(self, reply: Any, known: Sequence[Delivery] = ()) -> CommitResult:
        reply = as_list(reply)
        if reply[0] == "missing":
            return CommitResult(committed=False, status=RunStatus.FAILED)
        committed, status, in_flight, waiters, hitl, released = reply
        return CommitResult(
            committed=bool(committed),
            released=self.released(released, known),
            status=RunStatus(status),
            in_flight=int(in_flight),
            waiters=int(waiters),
            hitl=hitl == "1",
        )

    def begin(self, reply: Any) -> Begin:
        """``begin.lua``'s reply; the deadline is checked by the caller."""
        reply = as_list(reply)
        if reply[0] == "missing":
            return Begin(BeginStatus.MISSING)
        status, record, token, begins = (
            BeginStatus(reply[0]),
            self.record(reply[1:5]),
            reply[5],
            reply[6],
        )
        if status is BeginStatus.DUPLICATE:
            return Begin(status, record, redispatch=self.released(reply[7]))
        if status is BeginStatus.RUN and token:
            return Begin(status, record, token, self.policy.lease_s, int(begins))
        if status is BeginStatus.BUSY:
            return Begin(status, record, holder=token or None)
        return Begin(status, record, begins=int(begins))

    def swept(self, run_id: str, deliveries: Sequence[Any]) -> list[Recovered]:
        """``sweep_run.lua``'s ``{id, json, scheduled}`` triples.

        One that cannot be decoded here (a workflow this process does not know,
        another version's events) is logged and left to the next sweep.
        """
        recovered = []
        for delivery_id, json, scheduled in deliveries:
            try:
                delivery = self.codec.decode_delivery(self.codec.loads(json))
            except EventCodecError as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                logger.error(
                    "Cannot re-dispatch delivery %s of run %s: %s", delivery_id, run_id, first
                )
                continue
            recovered.append(Recovered(delivery, bool(scheduled)))
        return recovered

    def collected(self, reply: Any, expected: Sequence[type[Event]]) -> list[Event] | None:
        """The set a collect handed out (its events are of the ``expected`` types)."""
        reply = as_list(reply)
        if reply[0] != 1:
            return None
        _, events, workflow = reply
        known = {type_name(kind): kind for kind in expected}
        return [
            self.codec.decode_event(workflow, self.codec.loads(json), known=known)
            for json in self.codec.loads(events)
        ]

    def waiters(self, by_id: Mapping[str, str], order: Sequence[str]) -> list[Waiter]:
        # opaque: a process routing an answer may not know the workflow's own event types
        return [
            self.codec.decode_waiter(self.codec.loads(by_id[w]), opaque=True)
            for w in order
            if w in by_id
        ]

    def snapshot(self, reply: Sequence[Any]) -> RunSnapshot:
        record = self.record(reply[1:5])
        version, blob, has_blob, queued, in_progress, waiters, buffers, collected = reply[5:]
        decode, loads = self.codec.decode_delivery, self.codec.loads
        running = [decode(loads(json)) for json in in_progress]

        def entries(raw: str) -> list[tuple[str, Event]]:
            return [
                (entry["d"], self.codec.decode_event(record.workflow, loads(entry["e"])))
                for entry in loads(raw)
            ]

        completed = {
            owner: {tuple(loads(key)): entries(value) for key, value in loads(sets).items()}
            for owner, sets in zip(collected[::2], collected[1::2], strict=True)
        }
        return RunSnapshot(
            run=record,
            state=StateSnapshot(int(version), blob if int(has_blob) else None),
            queued=[decode(loads(json)) for json in queued],
            in_progress=running,
            waiters=[self.codec.decode_waiter(loads(json)) for json in waiters],
            buffers=resumable_buffers(
                {
                    tuple(loads(key)): entries(value)
                    for key, value in zip(buffers[::2], buffers[1::2], strict=True)
                },
                completed,
                {d.lineage_id for d in running},
            ),
        )

    def stream_entry(self, workflow: str, entry: Any) -> StreamEntry:
        """A stream entry; its Redis id ``0-<n>`` holds sequence ``n - 1``."""
        stream_id, fields = entry
        sequence = int(stream_id.partition("-")[2]) - 1
        return StreamEntry(
            sequence, self.codec.decode_event(workflow, self.codec.loads(fields["e"]))
        )


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
