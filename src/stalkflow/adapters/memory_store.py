"""The in-memory Store: runs live in this process's memory.

The embedded default. Every operation takes one ``threading.Lock`` for the few
dictionary updates it makes, so the store is safe to share between the event
loop of ``Workflow.run`` and the background loop behind ``Workflow.submit``;
waiting (on a stream, a lock, a run's end) uses futures woken thread-safely.
Events are kept as objects, never serialized: in one process that is both
faster and faithful to upstream (a StopEvent's result may be any object).

Claims, leases and the sweep (``begin``, ``heartbeat``, ``sweep``) keep the
port's promises with ``time.monotonic()`` deadlines; in one process nothing is
ever lost in transit, so the embedded engine never needs to sweep, but the
contract suite holds this store to the same rules as the Redis one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import threading
import time
from collections import deque
from collections.abc import Sequence

from stalkflow.adapters._waiting import new_waiter, wait, wake
from stalkflow.core.collect import Buffer, expected_counts, resumable_buffers
from stalkflow.core.deliveries import Delivery, Waiter
from stalkflow.core.runs import RunOutcome, RunRecord, RunStatus
from stalkflow.errors import RunExistsError
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
    SaveStatus,
    StateSnapshot,
    StreamEntry,
)


@dataclasses.dataclass
class _Run:
    record: RunRecord
    caps: dict[str, int]
    running: dict[str, int] = dataclasses.field(default_factory=dict)
    queued: dict[str, deque[Delivery]] = dataclasses.field(default_factory=dict)
    in_progress: dict[str, Delivery] = dataclasses.field(default_factory=dict)
    committed: set[str] = dataclasses.field(default_factory=set)
    waiters: dict[str, Waiter] = dataclasses.field(default_factory=dict)
    # waiters ever registered: a commit routed without a later one is not stale
    waiter_seq: int = 0
    # per waiter whose timeout is kept here: when it times out (monotonic seconds)
    waiter_deadlines: dict[str, float] = dataclasses.field(default_factory=dict)
    buffers: dict[tuple[str, str], Buffer[type[Event], Event]] = dataclasses.field(
        default_factory=dict
    )
    # per delivery id, the sets it completed, by buffer key: handed out again if
    # the delivery re-executes before its commit
    completed_sets: dict[str, dict[tuple[str, str], list[tuple[str, Event]]]] = dataclasses.field(
        default_factory=dict
    )
    # (buffer key, delivery id) of every event already handed out in a set, so a
    # delivery re-executed after that never buffers its event a second time
    consumed: set[tuple[tuple[str, str], str]] = dataclasses.field(default_factory=set)
    stream: list[Event] = dataclasses.field(default_factory=list)
    stream_waiters: list[asyncio.Future[None]] = dataclasses.field(default_factory=list)
    finish_waiters: list[asyncio.Future[None]] = dataclasses.field(default_factory=list)
    # per in-progress delivery id: when it is presumed lost (monotonic seconds)
    deadlines: dict[str, float] = dataclasses.field(default_factory=dict)
    # the token of the execution that claimed it, and how many executions started
    claims: dict[str, str] = dataclasses.field(default_factory=dict)
    begins: dict[str, int] = dataclasses.field(default_factory=dict)
    # retries kept here until their delay has passed
    scheduled: set[str] = dataclasses.field(default_factory=set)
    # per committed delivery id: the ids its commit released (the outbox)
    outbox: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def in_flight(self) -> int:
        return sum(self.running.values()) + sum(len(q) for q in self.queued.values())


@dataclasses.dataclass
class _Lock:
    token: str
    expires_at: float


class MemoryStore:
    """A ``Store`` in this process's memory; nothing is shared between instances."""

    def __init__(self, policy: DeliveryPolicy | None = None) -> None:
        self.policy = policy or DeliveryPolicy()
        self._mutex = threading.Lock()
        self._runs: dict[str, _Run] = {}
        self._states: dict[str, StateSnapshot] = {}
        self._locks: dict[str, _Lock] = {}
        self._lock_waiters: dict[str, list[asyncio.Future[None]]] = {}

    # --- runs ---------------------------------------------------------------------

    async def create_run(self, run: RunRecord, seed: RunSeed) -> Sequence[Delivery]:
        with self._mutex:
            if run.run_id in self._runs:
                raise RunExistsError(
                    f"Workflow run with run_id '{run.run_id}' already exists.", run_id=run.run_id
                )
            entry = _Run(record=run, caps=dict(seed.caps))
            self._runs[run.run_id] = entry
            if seed.state is not None:
                self._states[run.run_id] = StateSnapshot(version=1, blob=seed.state)
            for waiter in seed.waiters:
                self._register(entry, waiter)
                if waiter.waiter_id in seed.timeouts_in_store and waiter.timeout_s is not None:
                    due = time.monotonic() + max(0.0, waiter.timeout_s)
                    entry.waiter_deadlines[waiter.waiter_id] = due
            for key, events in seed.buffers.items():
                entry.buffers[key] = Buffer(
                    (f"seed-{i}", type(ev), ev) for i, ev in enumerate(events)
                )
            released: list[Delivery] = []
            for delivery in seed.deliveries:
                self._admit(entry, delivery, released)
            return released

    async def get_run(self, run_id: str) -> RunRecord | None:
        entry = self._runs.get(run_id)
        return entry.record if entry else None

    async def list_runs(
        self, *, workflow: str | None = None, status: RunStatus | None = None
    ) -> Sequence[RunRecord]:
        with self._mutex:
            records = [entry.record for entry in self._runs.values()]
        return [
            r
            for r in records
            if (workflow is None or r.workflow == workflow)
            and (status is None or r.status == status)
        ]

    async def finish_run(self, run_id: str, outcome: RunOutcome) -> bool:
        with self._mutex:
            entry = self._runs.get(run_id)
            if entry is None or entry.record.finished:
                return False
            self._finish(entry, outcome)
            return True

    def _finish(self, entry: _Run, outcome: RunOutcome) -> None:
        entry.record = dataclasses.replace(
            entry.record,
            status=outcome.status,
            result=outcome.result,
            error=outcome.error,
            updated_at=time.time(),
        )
        if outcome.terminal_event is not None:
            entry.stream.append(outcome.terminal_event)
        entry.buffers.clear()
        entry.completed_sets.clear()
        entry.consumed.clear()
        # what only a running run needs: a finished one refuses begins and commits
        for finished in (entry.committed, entry.running, entry.queued, entry.in_progress):
            finished.clear()
        entry.waiters.clear()
        entry.waiter_deadlines.clear()
        for bookkeeping in (entry.deadlines, entry.claims, entry.begins, entry.outbox):
            bookkeeping.clear()
        entry.scheduled.clear()
        wake(entry.stream_waiters)
        wake(entry.finish_waiters)

    async def wait_finished(self, run_id: str, timeout_s: float | None) -> RunRecord | None:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            with self._mutex:
                entry = self._runs.get(run_id)
                if entry is None:
                    return None
                if entry.record.finished:
                    return entry.record
                future = new_waiter()
                entry.finish_waiters.append(future)
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not await wait(future, remaining):
                return None

    async def snapshot(self, run_id: str) -> RunSnapshot | None:
        with self._mutex:
            entry = self._runs.get(run_id)
            if entry is None:
                return None
            return RunSnapshot(
                run=entry.record,
                state=self._states.get(run_id, StateSnapshot(0, None)),
                queued=[d for q in entry.queued.values() for d in q],
                in_progress=list(entry.in_progress.values()),
                waiters=list(entry.waiters.values()),
                buffers=resumable_buffers(
                    {key: buffer.entries for key, buffer in entry.buffers.items()},
                    entry.completed_sets,
                    {d.lineage_id for d in entry.in_progress.values()},
                ),
            )

    # --- execution ----------------------------------------------------------------

    async def begin(
        self,
        delivery: Delivery,
        token: str | None = None,
        take_over: str | None = None,
        running: Event | None = None,
    ) -> Begin:
        token = token or secrets.token_hex(8)
        delivery_id = delivery.delivery_id
        with self._mutex:
            entry = self._runs.get(delivery.run_id)
            if entry is None:
                return Begin(BeginStatus.MISSING)
            record = entry.record
            if record.finished:
                return Begin(BeginStatus.FINISHED, record)
            if delivery_id in entry.committed:
                return Begin(
                    BeginStatus.DUPLICATE, record, redispatch=self._unstarted(entry, delivery_id)
                )
            if record.deadline is not None and time.time() >= record.deadline:
                return Begin(BeginStatus.EXPIRED, record)
            if delivery_id not in entry.in_progress:
                # not released here: nothing to claim
                return self._run(entry, running, Begin(BeginStatus.RUN, record))
            now = time.monotonic()
            holder = entry.claims.get(delivery_id)
            live = entry.deadlines.get(delivery_id, 0) > now
            if holder is not None and holder not in (token, take_over) and live:
                return Begin(BeginStatus.BUSY, record, holder=holder)
            begins = entry.begins.get(delivery_id, 0)
            if holder != token:
                begins += 1
                entry.begins[delivery_id] = begins
            limit = self.policy.max_deliveries
            if limit > 0 and begins > limit:
                return Begin(BeginStatus.EXHAUSTED, record, begins=begins)
            entry.claims[delivery_id] = token
            entry.deadlines[delivery_id] = now + self.policy.lease_s
            entry.scheduled.discard(delivery_id)
            claimed = Begin(BeginStatus.RUN, record, token, self.policy.lease_s, begins)
            return self._run(entry, running, claimed)

    @staticmethod
    def _run(entry: _Run, running: Event | None, begin: Begin) -> Begin:
        """A ``RUN`` answer: the notice published, the run's waiters counted."""
        if running is not None:
            entry.stream.append(running)
            wake(entry.stream_waiters)
        return dataclasses.replace(begin, waiters=len(entry.waiters), waiter_seq=entry.waiter_seq)

    def _unstarted(self, entry: _Run, delivery_id: str) -> list[Delivery]:
        """What the commit of ``delivery_id`` released, never started, and is overdue.

        Each one handed out gets a fresh grace (as a sweep gives it).
        """
        now = time.monotonic()
        overdue = [
            child
            for child in entry.outbox.get(delivery_id, ())
            if child in entry.in_progress
            and child not in entry.claims
            and child not in entry.scheduled
            and entry.deadlines.get(child, float("inf")) <= now
        ]
        for child in overdue:
            entry.deadlines[child] = now + self.policy.dispatch_grace_s
        return [entry.in_progress[child] for child in overdue]

    async def heartbeat(self, run_id: str, delivery_id: str, token: str) -> bool:
        with self._mutex:
            entry = self._runs.get(run_id)
            if entry is None or entry.record.finished or entry.claims.get(delivery_id) != token:
                return False
            entry.deadlines[delivery_id] = time.monotonic() + self.policy.lease_s
            return True

    async def sweep(self, limit: int = 100, workflows: Sequence[str] = ()) -> Sequence[Recovered]:
        now = time.monotonic()
        recovered: list[Recovered] = []
        with self._mutex:
            for entry in self._runs.values():
                if entry.record.finished or (workflows and entry.record.workflow not in workflows):
                    continue
                for waiter_id, deadline in list(entry.waiter_deadlines.items()):
                    if deadline <= now and len(recovered) < limit:
                        released: list[Delivery] = []
                        self._expire(entry, waiter_id, released)
                        recovered.extend(Recovered(d, scheduled=True) for d in released)
                for delivery_id, deadline in list(entry.deadlines.items()):
                    if len(recovered) >= limit:
                        return recovered
                    delivery = entry.in_progress.get(delivery_id)
                    if delivery is None:
                        del entry.deadlines[delivery_id]
                        continue
                    if deadline > now:
                        continue
                    scheduled = delivery_id in entry.scheduled
                    entry.scheduled.discard(delivery_id)
                    entry.claims.pop(delivery_id, None)
                    entry.deadlines[delivery_id] = now + self.policy.dispatch_grace_s
                    recovered.append(Recovered(delivery, scheduled))
        return recovered

    async def redispatch_soon(
        self, run_id: str, delivery_ids: Sequence[str], delay_s: float = 0.0
    ) -> None:
        now = time.monotonic() + max(0.0, delay_s)
        with self._mutex:
            entry = self._runs.get(run_id)
            if entry is None or entry.record.finished:
                return
            for delivery_id in delivery_ids:
                if delivery_id in entry.in_progress and delivery_id not in entry.claims:
                    entry.deadlines[delivery_id] = now

    async def commit(self, run_id: str, commit: Commit) -> CommitResult:
        with self._mutex:
            entry = self._runs.get(run_id)
            if entry is None:
                return CommitResult(committed=False, status=RunStatus.FAILED)
            if entry.record.finished:
                return self._result(entry, False, [])
            stream_length = len(entry.stream)
            delivery = commit.delivery
            if delivery is not None:
                delivery_id = delivery.delivery_id
                if delivery_id in entry.committed:
                    return self._result(entry, False, [])
                holder = entry.claims.get(delivery_id)
                if commit.token is not None and holder is not None and holder != commit.token:
                    return self._result(entry, False, [])  # fenced: another execution claimed it
            if commit.waiter_seq is not None and commit.waiter_seq != entry.waiter_seq:
                # a waiter registered since the caller routed might take an output
                return dataclasses.replace(self._result(entry, False, []), stale=True)
            if delivery is not None:
                entry.committed.add(delivery_id)
                entry.in_progress.pop(delivery_id, None)
                for bookkeeping in (entry.deadlines, entry.claims, entry.begins):
                    bookkeeping.pop(delivery_id, None)
                entry.scheduled.discard(delivery_id)
                if commit.retry is None:
                    entry.completed_sets.pop(delivery.lineage_id, None)
            released: list[Delivery] = []
            if commit.retry is not None:
                retry_id = commit.retry.delivery_id
                entry.in_progress[retry_id] = commit.retry
                due = time.monotonic() + max(0.0, commit.retry_delay_s)
                if commit.retry_in_store:
                    entry.scheduled.add(retry_id)
                    entry.deadlines[retry_id] = due
                else:
                    entry.deadlines[retry_id] = due + self.policy.dispatch_grace_s
            elif delivery is not None:
                self._free_slot(entry, delivery.step, released)
            waiter = commit.waiter
            if waiter is not None:
                first = self._register(entry, waiter)
                if first and commit.waiter_event is not None:
                    entry.stream.append(commit.waiter_event)
                if commit.waiter_timeout_in_store and waiter.timeout_s is not None:
                    due = time.monotonic() + max(0.0, waiter.timeout_s)
                    entry.waiter_deadlines[waiter.waiter_id] = due
            for waiter_id, redelivery in commit.resolved:
                if self._unregister(entry, waiter_id) is not None:
                    self._admit(entry, redelivery, released)
            for routed in commit.routed:
                self._admit(entry, routed, released)
            entry.stream.extend(commit.stream)
            if delivery is not None and released:
                entry.outbox[delivery.delivery_id] = [d.delivery_id for d in released]
            if commit.outcome is not None:
                self._finish(entry, commit.outcome)
            elif len(entry.stream) != stream_length:
                # also the notices of deliveries queued behind a cap
                wake(entry.stream_waiters)
            return self._result(entry, True, released)

    async def expire_waiter(self, run_id: str, waiter_id: str) -> CommitResult:
        with self._mutex:
            entry = self._runs.get(run_id)
            if entry is None:
                return CommitResult(committed=False, status=RunStatus.FAILED)
            if entry.record.finished:
                return self._result(entry, False, [])
            released: list[Delivery] = []
            expired = self._expire(entry, waiter_id, released)
            return self._result(entry, expired, released)

    def _expire(self, entry: _Run, waiter_id: str, released: list[Delivery]) -> bool:
        """Time a waiter out: its step's re-run is admitted; False if it was not waiting."""
        waiter = self._unregister(entry, waiter_id)
        if waiter is None:
            return False
        stream_length = len(entry.stream)
        self._admit(entry, waiter.timeout_redelivery(), released)
        if len(entry.stream) != stream_length:
            wake(entry.stream_waiters)
        return True

    @staticmethod
    def _register(entry: _Run, waiter: Waiter) -> bool:
        """Register (or replace) a waiter; True if it is new."""
        first = waiter.waiter_id not in entry.waiters
        entry.waiters[waiter.waiter_id] = waiter
        if first:
            entry.waiter_seq += 1
        return first

    @staticmethod
    def _unregister(entry: _Run, waiter_id: str) -> Waiter | None:
        entry.waiter_deadlines.pop(waiter_id, None)
        return entry.waiters.pop(waiter_id, None)

    def _result(self, entry: _Run, committed: bool, released: list[Delivery]) -> CommitResult:
        return CommitResult(
            committed=committed,
            released=released,
            status=entry.record.status,
            in_flight=entry.in_flight(),
            waiters=len(entry.waiters),
            hitl=entry.record.hitl,
        )

    def _admit(self, entry: _Run, delivery: Delivery, released: list[Delivery]) -> None:
        step = delivery.step
        if entry.running.get(step, 0) < entry.caps.get(step, 1):
            entry.running[step] = entry.running.get(step, 0) + 1
            self._release(entry, delivery, released)
            return
        entry.queued.setdefault(step, deque()).append(delivery)
        entry.stream.append(
            StepStateChanged(
                name=step,
                step_state=StepState.PREPARING,
                worker_id="<enqueued>",
                input_event_name=type(delivery.event).__name__,
            )
        )

    def _free_slot(self, entry: _Run, step: str, released: list[Delivery]) -> None:
        entry.running[step] = max(0, entry.running.get(step, 0) - 1)
        queue = entry.queued.get(step)
        if queue:
            entry.running[step] += 1
            self._release(entry, queue.popleft(), released)

    def _release(self, entry: _Run, delivery: Delivery, released: list[Delivery]) -> None:
        entry.in_progress[delivery.delivery_id] = delivery
        entry.deadlines[delivery.delivery_id] = time.monotonic() + self.policy.dispatch_grace_s
        released.append(delivery)

    def collect(
        self,
        run_id: str,
        key: tuple[str, str],
        delivery_id: str,
        event: Event,
        expected: Sequence[type[Event]],
    ) -> list[Event] | None:
        with self._mutex:
            entry = self._runs[run_id]
            done = entry.completed_sets.get(delivery_id, {}).get(key)
            if done is not None:
                return [event for _, event in done]
            if (key, delivery_id) in entry.consumed:
                return None
            buffer = entry.buffers.get(key)
            if buffer is None:
                buffer = entry.buffers[key] = Buffer()
            counts = expected_counts(expected)
            if type(event) in counts:
                buffer.add(delivery_id, type(event), event)
            if not buffer.complete(counts):
                return None
            picked = buffer.pick(expected)
            del entry.buffers[key]
            entry.consumed.update((key, buffered) for buffered, _ in buffer.entries)
            entry.completed_sets.setdefault(delivery_id, {})[key] = picked
            return [event for _, event in picked]

    async def waiters(self, run_id: str) -> Sequence[Waiter]:
        entry = self._runs.get(run_id)
        return list(entry.waiters.values()) if entry else []

    # --- state --------------------------------------------------------------------

    async def load_state(self, key: str) -> StateSnapshot:
        return self._states.get(key, StateSnapshot(0, None))

    async def save_state(
        self, key: str, blob: str, expected_version: int, token: str | None = None
    ) -> SaveStatus:
        with self._mutex:
            lock = self._live_lock(key)
            if token is not None and (lock is None or lock.token != token):
                return SaveStatus.LOST
            if token is None and lock is not None:
                return SaveStatus.LOCKED
            current = self._states.get(key, StateSnapshot(0, None))
            if current.version != expected_version:
                return SaveStatus.CONFLICT
            self._states[key] = StateSnapshot(current.version + 1, blob)
            return SaveStatus.SAVED

    def _live_lock(self, key: str) -> _Lock | None:
        lock = self._locks.get(key)
        if lock is not None and lock.expires_at <= time.monotonic():
            del self._locks[key]
            return None
        return lock

    async def acquire_lock(self, key: str, token: str, lease_s: float, wait_s: float) -> bool:
        deadline = time.monotonic() + wait_s
        while True:
            with self._mutex:
                lock = self._live_lock(key)
                if lock is None:
                    self._locks[key] = _Lock(token, time.monotonic() + lease_s)
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                future = new_waiter()
                self._lock_waiters.setdefault(key, []).append(future)
                # wake no later than the lease's end, when the lock frees itself
                timeout = min(remaining, max(0.0, lock.expires_at - time.monotonic()) + 0.001)
            await wait(future, timeout)

    async def renew_lock(self, key: str, token: str, lease_s: float) -> bool:
        with self._mutex:
            lock = self._live_lock(key)
            if lock is None or lock.token != token:
                return False
            lock.expires_at = time.monotonic() + lease_s
            return True

    async def release_lock(self, key: str, token: str) -> None:
        with self._mutex:
            lock = self._live_lock(key)
            if lock is not None and lock.token == token:
                del self._locks[key]
            wake(self._lock_waiters.get(key, []))

    # --- stream -------------------------------------------------------------------

    async def append_stream(self, run_id: str, events: Sequence[Event]) -> bool:
        with self._mutex:
            entry = self._runs.get(run_id)
            if entry is None or entry.record.finished:
                return False
            entry.stream.extend(events)
            wake(entry.stream_waiters)
            return True

    async def read_stream(
        self, run_id: str, after: int, timeout_s: float | None
    ) -> Sequence[StreamEntry]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            with self._mutex:
                entry = self._runs.get(run_id)
                if entry is None:
                    return []
                start = after + 1
                if len(entry.stream) > start:
                    return [
                        StreamEntry(seq, ev)
                        for seq, ev in enumerate(entry.stream[start:], start=start)
                    ]
                if entry.record.finished:
                    return []
                future = new_waiter()
                entry.stream_waiters.append(future)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return []
            if not await wait(future, remaining):
                return []
