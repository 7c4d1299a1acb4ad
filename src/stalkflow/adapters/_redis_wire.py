"""How the Redis store's values look inside Redis and in its Lua scripts' arguments.

Pure translation, no I/O: ``RedisWire`` turns ports values into the JSON specs
the scripts take, and script replies back into ports values, with an
:class:`~stalkflow.core.codec.EventCodec` for every event, delivery, waiter and
run record. The scripts never parse an encoded value: each travels as an opaque
string next to the few fields a script acts on (a delivery's id and step).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from stalkflow.core.codec import EventCodec, type_name
from stalkflow.core.collect import Buffer, expected_counts, resumable_buffers
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

#: Entries kept by each of the wire's memos (state notices, run records) at most.
_MEMO_MAX = 1024

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
        self._notices: dict[tuple[Any, ...], str] = {}
        # run records by their stored JSON: each begin reads its run's
        self._records: dict[str, RunRecord] = {}

    # --- values ---------------------------------------------------------------------

    def dumps(self, obj: Any) -> str:
        return self.codec.dumps(obj)

    def event(self, ev: Event) -> str:
        if type(ev) is StepStateChanged and not (ev.__pydantic_private__ or {}).get("_data"):
            return self._notice(ev)  # one without dynamic keys
        return self.dumps(self.codec.encode_event(ev))

    def _notice(self, ev: StepStateChanged) -> str:
        """A step's state notice: two per execution, from a handful of distinct values."""
        key = (
            ev.name,
            ev.step_state,
            ev.worker_id,
            ev.input_event_name,
            ev.output_event_name,
        )
        found = self._notices.get(key)
        if found is None:
            found = self.dumps(self.codec.encode_event(ev))
            if len(self._notices) >= _MEMO_MAX:
                self._notices.clear()
            self._notices[key] = found
        return found

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

    def waiter(self, w: Waiter, *, stored: bool = False) -> dict[str, Any]:
        """A waiter, with the re-run its step gets if it times out (pre-encoded).

        ``stored``: its timeout is kept in the store (``due_ms`` from now).
        """
        spec: dict[str, Any] = {
            "id": w.waiter_id,
            "json": self.dumps(self.codec.encode_waiter(w)),
            "timeout": self.dumps(self.delivery(w.timeout_redelivery())),
        }
        if stored and w.timeout_s is not None:
            spec["due_ms"] = _ms(max(0.0, w.timeout_s))
        return spec

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
            "waiters": [
                self.waiter(w, stored=w.waiter_id in seed.timeouts_in_store) for w in seed.waiters
            ],
            "buffers": [
                [self.buffer_key(key), self._seed_buffer(events)]
                for key, events in seed.buffers.items()
            ],
            "deliveries": [self.delivery(d) for d in seed.deliveries],
            "grace_ms": self.grace_ms,
        }
        if seed.state is not None:
            spec["state"] = seed.state
        return self.dumps(spec)

    def _seed_buffer(self, events: Sequence[Event]) -> list[list[str]]:
        return [[f"seed-{i}", type_name(type(ev)), self.event(ev)] for i, ev in enumerate(events)]

    def commit_spec(self, commit: Commit) -> str:
        spec: dict[str, Any] = {
            "routed": [self.delivery(d) for d in commit.routed],
            "resolved": [{"wid": wid, "d": self.delivery(d)} for wid, d in commit.resolved],
            "stream": [self.event(ev) for ev in commit.stream],
            "grace_ms": self.grace_ms,
        }
        if commit.token is not None:
            spec["tok"] = commit.token
        if commit.waiter_seq is not None:
            spec["wseq"] = commit.waiter_seq
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
            waiter = self.waiter(commit.waiter, stored=commit.waiter_timeout_in_store)
            if commit.waiter_event is not None:
                waiter["ev"] = self.event(commit.waiter_event)
            spec["waiter"] = waiter
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
        counts = expected_counts(expected)
        eligible = type(event) in counts
        return [
            self.buffer_key(key),
            delivery_id,
            type_name(type(event)) if eligible else "",
            self.event(event) if eligible else "",
            self.dumps({type_name(kind): n for kind, n in counts.items()}),
        ]

    # --- script replies -----------------------------------------------------------------

    def record(self, fields: Sequence[Any]) -> RunRecord:
        """A run record from its run hash's :data:`RECORD_FIELDS`."""
        record, status, updated_at, outcome = fields
        if not outcome:  # a running run: its stored record, with its status and time
            base = self._records.get(record)
            if base is None:
                base = self._decode_record(record, status, updated_at, outcome)
                if len(self._records) >= _MEMO_MAX:
                    self._records.clear()
                self._records[record] = base
            return dataclasses.replace(base, status=RunStatus(status), updated_at=float(updated_at))
        return self._decode_record(record, status, updated_at, outcome)

    def _decode_record(self, record: str, status: str, updated_at: str, outcome: str) -> RunRecord:
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
        if reply[0] == "stale":
            return CommitResult(committed=False, stale=True)
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
        if status is BeginStatus.RUN:
            waiters, waiter_seq = int(reply[8]), int(reply[9])
            if not token:  # not released here: nothing was claimed
                return Begin(status, record, waiters=waiters, waiter_seq=waiter_seq)
            return Begin(
                status,
                record,
                token,
                self.policy.lease_s,
                int(begins),
                waiters=waiters,
                waiter_seq=waiter_seq,
            )
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
        """The set a collect handed out, in ``expected``'s order."""
        reply = as_list(reply)
        if reply[0] != 1:
            return None
        _, entries, workflow = reply
        known = {type_name(kind): kind for kind in set(expected)}
        buffer = Buffer(_buffer_entry(entry) for entry in self.codec.loads(entries))
        return [
            self.codec.decode_event(workflow, self.codec.loads(json), known=known)
            for _, json in buffer.pick([type_name(kind) for kind in expected])
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

        def event(json: str) -> Event:
            return self.codec.decode_event(record.workflow, loads(json))

        completed = {
            owner: {
                tuple(loads(key)): [
                    (entry_owner, event(json))
                    for entry_owner, _, json in map(_buffer_entry, loads(value))
                ]
                for key, value in loads(sets).items()
            }
            for owner, sets in zip(collected[::2], collected[1::2], strict=True)
        }
        pending = {
            key: [(owner, event(json)) for owner, json in entries]
            for key, entries in _buffer_fields(buffers).items()
        }
        return RunSnapshot(
            run=record,
            state=StateSnapshot(int(version), blob if int(has_blob) else None),
            queued=[decode(loads(json)) for json in queued],
            in_progress=running,
            waiters=[self.codec.decode_waiter(loads(json)) for json in waiters],
            buffers=resumable_buffers(
                {tuple(loads(key)): entries for key, entries in pending.items()},
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


def _buffer_entry(entry: str) -> tuple[str, str, str]:
    """A buffer entry: owner, type name and encoded event, NUL-separated (see ``lib.lua``)."""
    owner, kind, json = entry.split("\0", 2)
    return owner, kind, json


def _buffer_fields(flat: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """The entries of every buffer in a ``HGETALL`` of the buffers hash, in arrival order."""
    found: dict[str, list[tuple[int, str, str]]] = {}
    for field, value in zip(flat[::2], flat[1::2], strict=True):
        key, _, rest = field.partition("\0")
        if rest.startswith("e\0"):
            owner, _, json = _buffer_entry(value)
            found.setdefault(key, []).append((int(rest[2:]), owner, json))
    return {key: [(owner, json) for _, owner, json in sorted(rows)] for key, rows in found.items()}


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
