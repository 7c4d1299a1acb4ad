"""How the Redis store reads its Lua scripts' replies and its hashes back.

Pure translation, no I/O: ``RedisReplies`` turns what a script returns (arrays
of flags, counts and encoded values) into ports values, decoding every event,
delivery, waiter and run record with an
:class:`~stalkflow.core.codec.EventCodec`. It is the way back of
:mod:`stalkflow.adapters._redis_wire`. A running run's record is read on every
``begin``, so records are decoded once per stored JSON and kept.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from stalkflow.core.codec import EventCodec, type_name
from stalkflow.core.collect import Buffer, resumable_buffers
from stalkflow.core.deliveries import Delivery, Waiter
from stalkflow.core.runs import RunRecord, RunStatus
from stalkflow.errors import BackendError, EventCodecError
from stalkflow.events import Event
from stalkflow.ports import (
    Begin,
    BeginStatus,
    CommitResult,
    DeliveryPolicy,
    Recovered,
    RunSnapshot,
    StateSnapshot,
    StreamEntry,
)

logger = logging.getLogger("stalkflow.redis")

#: Run records kept decoded, at most.
_MEMO_MAX = 1024

#: The fields of a run hash that make up its record.
RECORD_FIELDS = ("record", "status", "updated_at", "outcome")


def as_list(value: Any) -> list[Any]:
    """A script reply as a list (the scripts return arrays)."""
    if not isinstance(value, list):
        raise BackendError(f"Unexpected reply from a Redis store script: {type(value).__name__}")
    return value


class RedisReplies:
    """Decodes script replies for one store."""

    def __init__(self, codec: EventCodec, policy: DeliveryPolicy) -> None:
        self.codec = codec
        self.policy = policy
        # run records by their stored JSON: each begin reads its run's
        self._records: dict[str, RunRecord] = {}

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
