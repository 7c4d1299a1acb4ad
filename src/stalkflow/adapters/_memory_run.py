"""One run in the memory store: what is kept for it, and the rules that change it.

:class:`RunEntry` holds a run's record and all its bookkeeping: the steps' caps
and queues, the deliveries in progress with their claims and deadlines, the
waiters, the collect buffers and the event stream. Its methods keep what both
the run's lifecycle and its deliveries rely on: a delivery is admitted under
its step's cap or queued behind it, a freed slot releases the next one, a
waiter is registered, expired or resolved once, and a finished run keeps only
its record and stream. The store calls them holding its lock; nothing here
locks or waits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque

from stalkflow.adapters._waiting import wake
from stalkflow.core.collect import Buffer
from stalkflow.core.deliveries import Delivery, Waiter
from stalkflow.core.runs import RunOutcome, RunRecord
from stalkflow.events import Event, StepState, StepStateChanged
from stalkflow.ports import CommitResult


@dataclasses.dataclass
class RunEntry:
    """A run and everything the memory store keeps for it, changed under its lock."""

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

    def result(self, committed: bool, released: list[Delivery]) -> CommitResult:
        return CommitResult(
            committed=committed,
            released=released,
            status=self.record.status,
            in_flight=self.in_flight(),
            waiters=len(self.waiters),
            hitl=self.record.hitl,
        )

    def finish(self, outcome: RunOutcome) -> None:
        self.record = dataclasses.replace(
            self.record,
            status=outcome.status,
            result=outcome.result,
            error=outcome.error,
            updated_at=time.time(),
        )
        if outcome.terminal_event is not None:
            self.stream.append(outcome.terminal_event)
        self.buffers.clear()
        self.completed_sets.clear()
        self.consumed.clear()
        # what only a running run needs: a finished one refuses begins and commits
        for finished in (self.committed, self.running, self.queued, self.in_progress):
            finished.clear()
        self.waiters.clear()
        self.waiter_deadlines.clear()
        for bookkeeping in (self.deadlines, self.claims, self.begins, self.outbox):
            bookkeeping.clear()
        self.scheduled.clear()
        wake(self.stream_waiters)
        wake(self.finish_waiters)

    # --- deliveries under the steps' caps -------------------------------------------

    def admit(self, delivery: Delivery, released: list[Delivery], grace_s: float) -> None:
        """Release ``delivery`` if its step has a free slot, else queue it (with a notice).

        A released delivery is presumed lost unless it begins within ``grace_s``.
        """
        step = delivery.step
        if self.running.get(step, 0) < self.caps.get(step, 1):
            self.running[step] = self.running.get(step, 0) + 1
            self._release(delivery, released, grace_s)
            return
        self.queued.setdefault(step, deque()).append(delivery)
        self.stream.append(
            StepStateChanged(
                name=step,
                step_state=StepState.PREPARING,
                worker_id="<enqueued>",
                input_event_name=type(delivery.event).__name__,
            )
        )

    def free_slot(self, step: str, released: list[Delivery], grace_s: float) -> None:
        """Give back a slot of ``step``: the first delivery queued for it takes it."""
        self.running[step] = max(0, self.running.get(step, 0) - 1)
        queue = self.queued.get(step)
        if queue:
            self.running[step] += 1
            self._release(queue.popleft(), released, grace_s)

    def _release(self, delivery: Delivery, released: list[Delivery], grace_s: float) -> None:
        self.in_progress[delivery.delivery_id] = delivery
        self.deadlines[delivery.delivery_id] = time.monotonic() + grace_s
        released.append(delivery)

    # --- waiters --------------------------------------------------------------------

    def register(self, waiter: Waiter) -> bool:
        """Register (or replace) a waiter; True if it is new."""
        first = waiter.waiter_id not in self.waiters
        self.waiters[waiter.waiter_id] = waiter
        if first:
            self.waiter_seq += 1
        return first

    def unregister(self, waiter_id: str) -> Waiter | None:
        self.waiter_deadlines.pop(waiter_id, None)
        return self.waiters.pop(waiter_id, None)

    def expire(self, waiter_id: str, released: list[Delivery], grace_s: float) -> bool:
        """Time a waiter out: its step's re-run is admitted; False if it was not waiting."""
        waiter = self.unregister(waiter_id)
        if waiter is None:
            return False
        stream_length = len(self.stream)
        self.admit(waiter.timeout_redelivery(), released, grace_s)
        if len(self.stream) != stream_length:
            wake(self.stream_waiters)
        return True
