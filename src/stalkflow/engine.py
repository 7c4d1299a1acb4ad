"""The engine: one Transport and one Store, wired to the executor.

With no configuration the engine is embedded: the local transport and the
memory store, in this process. ``stalkflow.configure(...)`` (or the
``STALKFLOW_BROKER_URL`` / ``STALKFLOW_REDIS_URL`` environment variables, read
when the engine is first needed, never at import) switches the default to the
Celery transport with the Redis store.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING

from stalkflow.context.state_store import LockSettings
from stalkflow.core.deliveries import Delivery, ErrorInfo, Waiter
from stalkflow.core.routing import RoutingTable
from stalkflow.core.runs import RunOutcome, RunRecord, RunStatus, timeout_message
from stalkflow.errors import (
    BackendError,
    RunFinishedError,
    RunNotFoundError,
    UnknownWorkflowError,
    WorkflowCancelledByUser,
    WorkflowTimeoutError,
)
from stalkflow.events import (
    Event,
    WorkflowCancelledEvent,
    WorkflowFailedEvent,
    WorkflowTimedOutEvent,
)
from stalkflow.execution import ExecutionSettings, Executor
from stalkflow.external_events import ExternalEvent
from stalkflow.observability import verbose
from stalkflow.ports import RunSeed, SendsLater, Store, Transport

logger = logging.getLogger("stalkflow.engine")

if TYPE_CHECKING:
    from stalkflow.workflow import Workflow


class WorkflowRegistry:
    """Workflows by name, so that a worker can execute deliveries of any of them.

    ``register`` keeps a workflow for good (a worker's served workflows);
    ``remember`` keeps it only while the application holds it, so that a
    process starting runs of many short-lived instances does not keep them all.
    """

    def __init__(self) -> None:
        self._workflows: dict[str, Workflow] = {}
        # every live instance of each name: a name is known while any of them lives
        self._remembered: dict[str, weakref.WeakSet[Workflow]] = {}
        self._lock = threading.Lock()

    def register(self, workflow: Workflow, *, replace: bool = True) -> None:
        with self._lock:
            if replace or workflow.workflow_name not in self._workflows:
                self._workflows[workflow.workflow_name] = workflow

    def remember(self, workflow: Workflow) -> None:
        """Know ``workflow`` by name while it is alive, unless one is registered.

        Several live instances of one name (a new instance for each run) keep the
        name known until the last of them is collected.
        """
        with self._lock:
            if workflow.workflow_name not in self._workflows:
                live = self._remembered.setdefault(workflow.workflow_name, weakref.WeakSet())
                live.add(workflow)

    def get(self, name: str) -> Workflow:
        found = self._workflows.get(name)
        if found is None:
            with self._lock:
                for workflow in self._remembered.get(name, ()):
                    found = workflow
                    break
        if found is None:
            raise UnknownWorkflowError(name)
        return found

    def names(self) -> list[str]:
        with self._lock:
            for name in [name for name, live in self._remembered.items() if not live]:
                del self._remembered[name]
            return sorted({*self._workflows, *self._remembered})


class Engine:
    """Executes workflow runs through a ``Transport``, keeping them in a ``Store``."""

    def __init__(
        self,
        store: Store,
        transport: Transport,
        *,
        locks: LockSettings | None = None,
        registry: WorkflowRegistry | None = None,
        execution: ExecutionSettings | None = None,
    ) -> None:
        self.store = store
        self.transport = transport
        self.locks = locks or LockSettings()
        self.registry = registry or WorkflowRegistry()
        self.execution = execution or ExecutionSettings()
        self.executor = Executor(self)
        # Runs started in this process execute on the exact workflow instance
        # that started them (its resources, its attributes), as upstream's do.
        self._live: weakref.WeakValueDictionary[str, Workflow] = weakref.WeakValueDictionary()
        # events sent from outside, held until a waiter of their run takes them
        self._held: set[asyncio.Task[None]] = set()
        transport.start(self.executor.execute)
        if isinstance(transport, SendsLater):
            transport.on_unsent(self.executor.unsent)

    @classmethod
    def embedded(cls) -> Engine:
        from stalkflow.adapters.local_transport import LocalTransport
        from stalkflow.adapters.memory_store import MemoryStore

        return cls(MemoryStore(), LocalTransport())

    # --- runs -----------------------------------------------------------------------

    def workflow_for(self, delivery: Delivery) -> Workflow:
        live = self._live.get(delivery.run_id)
        return live if live is not None else self.registry.get(delivery.workflow)

    async def start_run(
        self, workflow: Workflow, run_id: str, seed: RunSeed, timeout_s: float | None
    ) -> RunRecord:
        now = time.time()
        record = RunRecord(
            run_id=run_id,
            workflow=workflow.workflow_name,
            created_at=now,
            updated_at=now,
            deadline=None if timeout_s is None else now + timeout_s,
            timeout_s=timeout_s,
            hitl=workflow._plan().hitl,
            routes=workflow._plan().routing.routes(),
        )
        self._live[run_id] = workflow
        self.registry.remember(workflow)
        # restored from a snapshot, waiters' timeouts start anew: long ones in the store
        stored = frozenset(
            w.waiter_id for w in seed.waiters if self.execution.kept_in_store(w.timeout_s)
        )
        if stored:
            seed = dataclasses.replace(seed, timeouts_in_store=stored)
        released = await self.store.create_run(record, seed)
        await self.send_released(run_id, released)
        if seed.stream:
            await self.store.append_stream(run_id, list(seed.stream))
        for waiter in seed.waiters:
            if waiter.waiter_id not in stored:
                await self.schedule_waiter_timeout(run_id, waiter)
        return record

    async def get_run(self, run_id: str) -> RunRecord:
        run = await self.store.get_run(run_id)
        if run is None:
            raise RunNotFoundError(f"No workflow run with id {run_id!r}", run_id=run_id)
        return run

    async def send_event(self, run_id: str, event: Event, step: str | None = None) -> None:
        """Deliver an event from outside the run's steps (a human, a client).

        An event that no step accepts and no waiter waits for yet is held for
        the run (in this process, while the run lasts) and given to the first
        waiter it matches: an answer sent right after ``run()`` reaches the step
        that is about to ``wait_for_event`` it, as it does in llama-index-workflows,
        where the send is processed after the steps already under way.
        """
        run = await self.get_run(run_id)
        if run.finished:
            raise RunFinishedError(
                f"Workflow run {run_id!r} already {run.status.value}; it accepts no events",
                run_id=run_id,
            )
        routing = self._routing_for(run)
        routing.check_target(event, step)
        if self._verbose(run_id, run.workflow):
            verbose.say(verbose.added(event, step))
        external = ExternalEvent(run, routing, event, step)
        if not await external.route(self):
            task = asyncio.ensure_future(external.hold_for_waiter(self))
            self._held.add(task)
            task.add_done_callback(self._held.discard)

    async def send_released(self, run_id: str, deliveries: Sequence[Delivery]) -> None:
        """Dispatch what the store released for a caller outside the steps.

        The store has accepted the work, so it is not lost if sending fails (the
        broker is away): the deliveries are marked for the workers' sweep, which
        sends them once the broker is back, and the caller is not told to retry
        (which would start the run, or route the event, twice).
        """
        if not deliveries:
            return
        try:
            await self.transport.dispatch(deliveries)
        except BackendError as exc:
            logger.warning(
                "Run %s: sending %d delivery(ies) failed (%s); the store keeps them and the "
                "workers' sweep sends them when the broker is back",
                run_id,
                len(deliveries),
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )
            with contextlib.suppress(BackendError):
                await self.store.redispatch_soon(run_id, [d.delivery_id for d in deliveries])

    def _routing_for(self, run: RunRecord) -> RoutingTable:
        """The run's routing table: its workflow's if known here, else the stored one."""
        live = self._live.get(run.run_id)
        if live is not None:
            return live._plan().routing
        if run.workflow in self.registry.names():
            return self.registry.get(run.workflow)._plan().routing
        if run.routes:
            return RoutingTable(run.routes)
        raise UnknownWorkflowError(run.workflow)

    def _verbose(self, run_id: str, workflow: str | None = None) -> bool:
        """Whether the run's workflow, as known here, writes its activity (``verbose=True``)."""
        live = self._live.get(run_id)
        if live is None and workflow is not None:
            with contextlib.suppress(UnknownWorkflowError):
                live = self.registry.get(workflow)
        return live is not None and live._verbose

    async def cancel(self, run_id: str) -> bool:
        """Cancel a running run; False if it had already finished."""
        error = WorkflowCancelledByUser()
        outcome = RunOutcome(
            RunStatus.CANCELLED,
            error=ErrorInfo.from_exception(error),
            terminal_event=WorkflowCancelledEvent(),
        )
        cancelled = await self.store.finish_run(run_id, outcome)
        if cancelled:
            if self._verbose(run_id):
                verbose.say(verbose.CANCELLED)
            self.transport.run_finished(run_id)
        return cancelled

    async def fail(self, run_id: str, error: BaseException, *, step: str | None = None) -> bool:
        """Fail a running run with ``error``; False if it had already finished."""
        outcome = RunOutcome(
            RunStatus.FAILED,
            error=ErrorInfo.from_exception(error, step=step),
            terminal_event=WorkflowFailedEvent(
                step_name=step or "<engine>", exception=error, attempts=0, elapsed_seconds=0.0
            ),
        )
        failed = await self.store.finish_run(run_id, outcome)
        if failed:
            self.transport.run_finished(run_id)
        return failed

    async def expire(self, run: RunRecord) -> bool:
        """Time out a run past its deadline; False if it had already finished."""
        snapshot = await self.store.snapshot(run.run_id)
        active = [d.step for d in snapshot.in_progress] if snapshot else []
        error = WorkflowTimeoutError(timeout_message(run.timeout_s, active))
        outcome = RunOutcome(
            RunStatus.TIMED_OUT,
            error=ErrorInfo.from_exception(error),
            terminal_event=WorkflowTimedOutEvent(
                timeout=run.timeout_s or 0.0, active_steps=sorted(set(active))
            ),
        )
        expired = await self.store.finish_run(run.run_id, outcome)
        if expired:
            if self._verbose(run.run_id, run.workflow):
                verbose.say(verbose.timed_out(run.timeout_s or 0.0))
            self.transport.run_finished(run.run_id)
        return expired

    async def wait(self, run_id: str, timeout_s: float | None = None) -> RunRecord | None:
        """The finished run, enforcing its deadline; None if ``timeout_s`` passes first."""
        run = await self.get_run(run_id)
        waited = 0.0
        while not run.finished:
            budget = None if timeout_s is None else max(0.0, timeout_s - waited)
            until_deadline = None if run.deadline is None else run.deadline - time.time()
            wait_s = _min(budget, until_deadline)
            started = time.monotonic()
            finished = await self.store.wait_finished(run_id, wait_s)
            waited += time.monotonic() - started
            if finished is not None:
                return finished
            if run.deadline is not None and time.time() >= run.deadline:
                await self.expire(run)
                run = await self.get_run(run_id)
                continue
            if timeout_s is not None and waited >= timeout_s:
                return None
        return run

    async def schedule_waiter_timeout(self, run_id: str, waiter: Waiter) -> None:
        if waiter.timeout_s is None:
            return
        timer = dataclasses.replace(
            waiter.delivery,
            delivery_id=f"timer:{waiter.delivery.delivery_id}:{waiter.waiter_id}",
            expires_waiter=waiter.waiter_id,
        )
        await self.transport.dispatch([timer], waiter.timeout_s)

    async def runs(self, workflow: str | None = None) -> Sequence[RunRecord]:
        return await self.store.list_runs(workflow=workflow)


def _min(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


# --- the default engine ------------------------------------------------------------

_default: Engine | None = None
_default_lock = threading.Lock()


def get_engine() -> Engine:
    """The engine workflows use when given none: configured, or embedded."""
    global _default
    with _default_lock:
        if _default is None:
            _default = _engine_from_environment() or Engine.embedded()
        return _default


def set_engine(engine: Engine | None) -> None:
    """Make ``engine`` the default (``None`` returns to the lazily made default)."""
    global _default
    with _default_lock:
        _default = engine


def _engine_from_environment() -> Engine | None:
    from stalkflow.settings import Settings

    settings = Settings.from_env()
    if not settings.distributed:
        return None
    return settings.build_engine()
