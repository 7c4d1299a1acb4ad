"""The ``Executor``: one delivery through begin, body, commit and dispatch."""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Sequence
from typing import TYPE_CHECKING

from stalkflow.context.step_scope import StepScope
from stalkflow.core.deliveries import Delivery, Waiter
from stalkflow.core.runs import RunRecord
from stalkflow.errors import BackendError, DeliveryLimitError, UnknownWorkflowError
from stalkflow.events import StepState, StepStateChanged
from stalkflow.execution import dispatch as dispatching
from stalkflow.execution import sweep as sweeping
from stalkflow.execution.begin import claim, settle
from stalkflow.execution.body import Failed, Outcome, Returned, run_body
from stalkflow.execution.claims import Heartbeat, claim_token
from stalkflow.execution.commit import commit_for, failure_commit, outputs_of
from stalkflow.execution.settings import ExecutionSettings, describe, logger
from stalkflow.observability import verbose
from stalkflow.ports import Begin, BeginStatus, Commit, CommitResult

if TYPE_CHECKING:
    from stalkflow.engine import Engine
    from stalkflow.plan import Plan


#: Claims kept for executions retried in place after a backend error, at most.
_HELD_CLAIMS_MAX = 1024


class Executor:
    """Runs deliveries for one engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # claims of executions that failed on a backend error: an execution of the
        # same delivery retried in place here takes its claim back
        self._held: dict[str, str] = {}
        # slot indices per (run, step), for StepStateChanged.worker_id
        self._slots: dict[tuple[str, str], _Slots] = {}

    @property
    def settings(self) -> ExecutionSettings:
        return self._engine.execution

    async def execute(self, delivery: Delivery) -> Waiter | None:
        """Execute one delivery; the waiter its step registered, if it ended waiting."""
        engine = self._engine
        if delivery.expires_waiter is not None:
            result = await engine.store.expire_waiter(delivery.run_id, delivery.expires_waiter)
            if result.committed and _verbose(engine, delivery):
                verbose.say(verbose.waiter_timed_out(delivery.step, delivery.expires_waiter))
            await dispatching.after_commit(engine, delivery.run_id, result, None)
            return None
        token = self._held.pop(delivery.delivery_id, None) or claim_token()
        slot = self._take_slot(delivery)
        try:
            begin = await claim(engine, delivery, token, str(slot))
            if begin.status is BeginStatus.EXHAUSTED and begin.run is not None:
                await self._give_up(delivery, begin.run, begin.begins)
                return None
            if begin.status is not BeginStatus.RUN or begin.run is None:
                await settle(engine, delivery, begin)
                return None
            try:
                result, commit = await self._execute_claimed(delivery, begin, begin.run, slot)
            except BackendError:
                if begin.token is not None:
                    if len(self._held) >= _HELD_CLAIMS_MAX:
                        self._held.pop(next(iter(self._held)))
                    self._held[delivery.delivery_id] = begin.token
                raise
        finally:
            self._free_slot(delivery, slot)
        await dispatching.after_commit(engine, delivery.run_id, result, commit)
        return commit.waiter if result.committed else None

    def _take_slot(self, delivery: Delivery) -> int:
        """The smallest slot index free among this process's executions of the run's step."""
        key = (delivery.run_id, delivery.step)
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = _Slots()
        return slots.take()

    def _free_slot(self, delivery: Delivery, slot: int) -> None:
        key = (delivery.run_id, delivery.step)
        slots = self._slots.get(key)
        if slots is not None and slots.free(slot):
            del self._slots[key]

    async def _execute_claimed(
        self, delivery: Delivery, begin: Begin, run: RunRecord, slot: int
    ) -> tuple[CommitResult, Commit]:
        engine = self._engine
        workflow = engine.workflow_for(delivery)
        plan = workflow._plan()
        scope = StepScope(delivery, worker_id=str(slot))
        if workflow._verbose:
            event_name = type(delivery.event).__name__
            verbose.say(verbose.started(delivery.step, scope.worker_id, event_name))
        heartbeat = Heartbeat(engine.store, delivery, begin)
        try:
            outcome = await run_body(engine, workflow, plan, delivery, scope, run)
            result, commit = await self._commit(plan, delivery, begin, outcome, scope)
        finally:
            heartbeat.stop()
        if workflow._verbose and result.committed:
            returned = outcome.event if isinstance(outcome, Returned) else None
            verbose.say(
                *verbose.committed(
                    scope.sent, returned, commit.stream, commit.routed, result.released
                )
            )
        if not result.committed and not result.status.finished:
            logger.info(
                "The commit of %s changed nothing: it was committed already, or another "
                "execution claimed it after this one's lease ran out",
                describe(delivery),
            )
        return result, commit

    async def _commit(
        self, plan: Plan, delivery: Delivery, begin: Begin, outcome: Outcome, scope: StepScope
    ) -> tuple[CommitResult, Commit]:
        """Route the outputs and commit; route again if a waiter appeared meanwhile.

        The run's waiters are read only if it had any when the delivery began;
        the commit is refused (``stale``) if one was registered since.
        """
        store = self._engine.store
        outputs = outputs_of(outcome, scope)
        waiters: Sequence[Waiter] = ()
        if outputs and begin.waiters:
            waiters = await store.waiters(delivery.run_id)
        seq = begin.waiter_seq if outputs else None
        while True:
            commit = commit_for(
                plan, self.settings, delivery, outcome, outputs, waiters, scope.worker_id
            )
            commit = _fenced(commit, begin.token, seq)
            result = await store.commit(delivery.run_id, commit)
            if not result.stale:
                return result, commit
            waiters, seq = await store.waiters(delivery.run_id), None

    async def _give_up(self, delivery: Delivery, run: RunRecord, begins: int) -> None:
        """Fail a delivery started too many times without a commit (DeliveryLimitError)."""
        error = DeliveryLimitError(
            f"Step {delivery.step!r} of run {delivery.run_id!r} was started {begins - 1} "
            f"time(s) for the same event ({type(delivery.event).__name__}) and never "
            "finished: each time its worker process died (a crash, a hard time limit, "
            "the OOM killer) or lost the message. It is not delivered again."
        )
        logger.error("%s: %s", describe(delivery), error)
        plan = self._engine.workflow_for(delivery)._plan()
        done = StepStateChanged(
            name=delivery.step,
            step_state=StepState.NOT_RUNNING,
            worker_id=str(delivery.attempt - 1),
            input_event_name=str(type(delivery.event)),
        )
        failed = Failed(error, f"{type(error).__qualname__}: {error}")
        commit = failure_commit(plan, self.settings, delivery, failed, done, retry=False)
        result = await self._engine.store.commit(delivery.run_id, commit)
        await dispatching.after_commit(self._engine, delivery.run_id, result, commit)

    async def unsent(
        self, deliveries: Sequence[Delivery], delay_s: float, error: BaseException
    ) -> None:
        """Deliveries the transport accepted and then could not send: marked for a resend."""
        await dispatching.unsent(self._engine, deliveries, delay_s, error)

    # --- the sweep ------------------------------------------------------------------

    async def sweep_once(self) -> int:
        """Send what the store hands out: retries and waiter re-runs now due, the presumed lost.

        A delivery is presumed lost when its claim's lease ran out with no
        heartbeat (its worker died, or hangs with its event loop blocked), or
        when it was released and never started within the dispatch grace (its
        message was lost). Returns how many were sent.
        """
        return await sweeping.sweep_once(self._engine)

    async def sweep_forever(self, interval_s: float) -> None:
        """``sweep_once`` every ``interval_s`` seconds, surviving store and broker outages."""
        await sweeping.sweep_forever(self._engine, interval_s)


class _Slots:
    """Slot indices of one step's executions here: the smallest free one first, O(log n)."""

    __slots__ = ("_freed", "_next", "_used")

    def __init__(self) -> None:
        self._freed: list[int] = []  # a heap: indices below ``_next`` not in use
        self._next = 0
        self._used = 0

    def take(self) -> int:
        self._used += 1
        if self._freed:
            return heapq.heappop(self._freed)
        self._next += 1
        return self._next - 1

    def free(self, slot: int) -> bool:
        """Give ``slot`` back; True when none is in use any more."""
        heapq.heappush(self._freed, slot)
        self._used -= 1
        return self._used == 0


def _verbose(engine: Engine, delivery: Delivery) -> bool:
    """Whether the workflow of ``delivery``, if known here, writes its activity."""
    try:
        return engine.workflow_for(delivery)._verbose
    except UnknownWorkflowError:
        return False


def _fenced(commit: Commit, token: str | None, waiter_seq: int | None) -> Commit:
    """The commit fenced by the execution's claim and by the waiters its routing saw."""
    if token is None and waiter_seq is None:
        return commit
    return dataclasses.replace(commit, token=token, waiter_seq=waiter_seq)
