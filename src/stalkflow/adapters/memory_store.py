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

:class:`MemoryStore` is the port: it holds the lock, finds the run, and keeps
runs' lifecycles and streams itself. What it keeps per run, and the rules of
caps and waiters, are in ``_memory_run``; the deliveries' operations (claims,
commits, the sweep, collect) in ``_memory_deliveries``; state blobs and their
locks in ``_memory_state``.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Sequence

from stalkflow.adapters import _memory_deliveries as deliveries
from stalkflow.adapters._memory_run import RunEntry
from stalkflow.adapters._memory_state import MemoryStates
from stalkflow.adapters._waiting import new_waiter, wait, wake
from stalkflow.core.collect import Buffer, resumable_buffers
from stalkflow.core.deliveries import Delivery, Waiter
from stalkflow.core.runs import RunOutcome, RunRecord, RunStatus
from stalkflow.errors import RunExistsError
from stalkflow.events import Event
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


class MemoryStore:
    """A ``Store`` in this process's memory; nothing is shared between instances."""

    def __init__(self, policy: DeliveryPolicy | None = None) -> None:
        self.policy = policy or DeliveryPolicy()
        self._mutex = threading.Lock()
        self._runs: dict[str, RunEntry] = {}
        self._states = MemoryStates(self._mutex)

    # --- runs ---------------------------------------------------------------------

    async def create_run(self, run: RunRecord, seed: RunSeed) -> Sequence[Delivery]:
        with self._mutex:
            if run.run_id in self._runs:
                raise RunExistsError(
                    f"Workflow run with run_id '{run.run_id}' already exists.", run_id=run.run_id
                )
            entry = RunEntry(record=run, caps=dict(seed.caps))
            self._runs[run.run_id] = entry
            if seed.state is not None:
                self._states.seed(run.run_id, seed.state)
            for waiter in seed.waiters:
                entry.register(waiter)
                if waiter.waiter_id in seed.timeouts_in_store and waiter.timeout_s is not None:
                    due = time.monotonic() + max(0.0, waiter.timeout_s)
                    entry.waiter_deadlines[waiter.waiter_id] = due
            for key, events in seed.buffers.items():
                entry.buffers[key] = Buffer(
                    (f"seed-{i}", type(ev), ev) for i, ev in enumerate(events)
                )
            released: list[Delivery] = []
            for delivery in seed.deliveries:
                entry.admit(delivery, released, self.policy.dispatch_grace_s)
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
            entry.finish(outcome)
            return True

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
                state=self._states.get(run_id),
                queued=[d for q in entry.queued.values() for d in q],
                in_progress=list(entry.in_progress.values()),
                waiters=list(entry.waiters.values()),
                buffers=resumable_buffers(
                    {key: buffer.entries for key, buffer in entry.buffers.items()},
                    entry.completed_sets,
                    {d.lineage_id for d in entry.in_progress.values()},
                ),
            )

    # --- deliveries (see _memory_deliveries) --------------------------------------

    async def begin(
        self,
        delivery: Delivery,
        token: str | None = None,
        take_over: str | None = None,
        running: Event | None = None,
    ) -> Begin:
        token = token or secrets.token_hex(8)
        with self._mutex:
            entry = self._runs.get(delivery.run_id)
            if entry is None:
                return Begin(BeginStatus.MISSING)
            return deliveries.begin(entry, delivery, token, take_over, running, self.policy)

    async def heartbeat(self, run_id: str, delivery_id: str, token: str) -> bool:
        with self._mutex:
            entry = self._runs.get(run_id)
            if entry is None:
                return False
            return deliveries.heartbeat(entry, delivery_id, token, self.policy)

    async def sweep(self, limit: int = 100, workflows: Sequence[str] = ()) -> Sequence[Recovered]:
        now = time.monotonic()
        recovered: list[Recovered] = []
        with self._mutex:
            for entry in self._runs.values():
                if entry.record.finished or (workflows and entry.record.workflow not in workflows):
                    continue
                if not deliveries.sweep(entry, now, limit, recovered, self.policy):
                    return recovered
        return recovered

    async def redispatch_soon(
        self, run_id: str, delivery_ids: Sequence[str], delay_s: float = 0.0
    ) -> None:
        now = time.monotonic() + max(0.0, delay_s)
        with self._mutex:
            entry = self._runs.get(run_id)
            if entry is not None:
                deliveries.redispatch_soon(entry, delivery_ids, now)

    async def commit(self, run_id: str, commit: Commit) -> CommitResult:
        with self._mutex:
            entry = self._runs.get(run_id)
            if entry is None:
                return CommitResult(committed=False, status=RunStatus.FAILED)
            return deliveries.commit(entry, commit, self.policy)

    async def expire_waiter(self, run_id: str, waiter_id: str) -> CommitResult:
        with self._mutex:
            entry = self._runs.get(run_id)
            if entry is None:
                return CommitResult(committed=False, status=RunStatus.FAILED)
            return deliveries.expire_waiter(entry, waiter_id, self.policy)

    def collect(
        self,
        run_id: str,
        key: tuple[str, str],
        delivery_id: str,
        event: Event,
        expected: Sequence[type[Event]],
    ) -> list[Event] | None:
        with self._mutex:
            return deliveries.collect(self._runs[run_id], key, delivery_id, event, expected)

    async def waiters(self, run_id: str) -> Sequence[Waiter]:
        entry = self._runs.get(run_id)
        return list(entry.waiters.values()) if entry else []

    # --- state (see _memory_state) ------------------------------------------------

    async def load_state(self, key: str) -> StateSnapshot:
        return self._states.get(key)

    async def save_state(
        self, key: str, blob: str, expected_version: int, token: str | None = None
    ) -> SaveStatus:
        return self._states.save(key, blob, expected_version, token)

    async def acquire_lock(self, key: str, token: str, lease_s: float, wait_s: float) -> bool:
        return await self._states.acquire_lock(key, token, lease_s, wait_s)

    async def renew_lock(self, key: str, token: str, lease_s: float) -> bool:
        return self._states.renew_lock(key, token, lease_s)

    async def release_lock(self, key: str, token: str) -> None:
        self._states.release_lock(key, token)

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
