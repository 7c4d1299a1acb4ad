"""Executing one delivery: begin, run the step body, commit, dispatch.

This is the same code on every engine: the embedded one calls it from an
asyncio task, a Celery worker from its task. Its decisions (where outputs go,
whether to retry, whether the run is done or stalled) are the pure functions of
``stalkflow.core``; the store applies them atomically.

What survives failures (see ``docs/guarantees.md``):

- ``begin`` claims the delivery under a lease that a heartbeat renews while the
  body runs; another copy of the message meanwhile is dropped (``BUSY``), and
  the commit is fenced by the claim;
- a redelivered message of a committed delivery re-sends what that commit
  released and never started (its dispatch failed): the store's outbox;
- ``sweep_once`` (run periodically by workers) re-sends deliveries whose worker
  died or whose message was lost, and retries kept in the store until due;
- a delivery started ``max_deliveries`` times without a commit fails its step
  with ``DeliveryLimitError``; a body past its time limit fails with
  ``StepTimeoutError``; both follow the ``@catch_error`` rules of any step
  exception (and a timeout the retry policy too).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import logging
import os
import secrets
import socket
import time
import traceback
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from stalkflow.context.step_scope import StepScope, WaitingForEvent, enter, leave
from stalkflow.core.deliveries import Delivery, ErrorInfo, Waiter
from stalkflow.core.ids import child_delivery_id
from stalkflow.core.routing import is_expected_unhandled
from stalkflow.core.runs import RunOutcome, RunRecord, RunStatus, is_stalled, stalled_message
from stalkflow.errors import (
    BackendError,
    DeliveryLimitError,
    StepTimeoutError,
    WorkflowRuntimeError,
    WorkflowStalledError,
)
from stalkflow.events import (
    Event,
    InputRequiredEvent,
    StepFailedEvent,
    StepState,
    StepStateChanged,
    StopEvent,
    UnhandledEvent,
    WorkflowFailedEvent,
)
from stalkflow.ports import Begin, BeginStatus, Commit, CommitResult
from stalkflow.resource import resolve_resources
from stalkflow.retry_policy import call_policy, retry_seed

if TYPE_CHECKING:
    from stalkflow.engine import Engine
    from stalkflow.plan import Plan
    from stalkflow.workflow import Workflow

logger = logging.getLogger("stalkflow.execution")

T = TypeVar("T")

#: Claims kept for executions retried in place after a backend error, at most.
_HELD_CLAIMS_MAX = 1024
#: How long a step body cancelled at its time limit gets to unwind.
_UNWIND_S = 1.0


@dataclasses.dataclass(frozen=True)
class ExecutionSettings:
    """What the executor decides beyond the store's rules.

    ``countdown_max_s``: a retry delayed longer than this is kept in the store
    until due and sent by a sweep; a shorter one goes to the transport with its
    delay (a broker countdown). ``None`` sends every delay to the transport (the
    embedded engine, whose timers cannot be lost). ``step_timeout_s``: the time
    limit of step bodies that set none with ``@step(soft_time_limit=...)``.
    ``sweep_limit``: the most deliveries one sweep hands out.
    """

    countdown_max_s: float | None = None
    step_timeout_s: float | None = None
    sweep_limit: int = 200


def claim_token() -> str:
    """A claim token naming this process: ``"<host>~<pid namespace>/<pid>/<random>"``."""
    return f"{_HOST}/{os.getpid()}/{secrets.token_hex(6)}"


def holder_is_dead(holder: str | None) -> bool:
    """Whether a claim token names a process of this machine that no longer runs.

    Only a process on this host can be checked; any other holder (another
    host, a token of another form, this very process) counts as alive, and its
    lease decides. A wrong "dead" (a reused pid namespace) costs a duplicate
    execution, whose commit the claim fences; never a lost one.
    """
    if not holder:
        return False
    host, _, pid_text = holder.rpartition("/")[0].rpartition("/")
    if host != _HOST or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists, owned by someone else
    try:  # a zombie (dead, not yet reaped) is dead
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _machine() -> str:
    """This host's name and PID namespace: where a pid in a claim token means this process.

    Containers may share a hostname; their PID namespaces differ, and a pid is only
    checked where both match.
    """
    try:
        namespace = os.readlink("/proc/self/ns/pid").replace("/", "")
    except OSError:
        namespace = ""
    return f"{socket.gethostname().replace('/', '')}~{namespace}"


_HOST = _machine()


def describe(delivery: Delivery) -> str:
    """What logs may show of a delivery: ids, step, event type, attempt; never a payload."""
    return (
        f"run_id={delivery.run_id} step={delivery.step} "
        f"event={type(delivery.event).__name__} attempt={delivery.attempt} "
        f"delivery={delivery.delivery_id}"
    )


@dataclasses.dataclass(frozen=True)
class Returned:
    event: Event | None


@dataclasses.dataclass(frozen=True)
class Waiting:
    waiter: Waiter
    waiter_event: Event | None


@dataclasses.dataclass(frozen=True)
class Failed:
    error: BaseException
    traceback: str


Outcome = Returned | Waiting | Failed


class Executor:
    """Runs deliveries for one engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # claims of executions that failed on a backend error: an execution of the
        # same delivery retried in place here takes its claim back
        self._held: dict[str, str] = {}
        # slot indices in use per (run, step), for StepStateChanged.worker_id
        self._slots: dict[tuple[str, str], set[int]] = {}

    @property
    def settings(self) -> ExecutionSettings:
        return self._engine.execution

    async def execute(self, delivery: Delivery) -> None:
        store = self._engine.store
        if delivery.expires_waiter is not None:
            result = await store.expire_waiter(delivery.run_id, delivery.expires_waiter)
            await self._after(delivery.run_id, result, None)
            return
        token = self._held.pop(delivery.delivery_id, None) or claim_token()
        begin = await store.begin(delivery, token)
        if begin.status is BeginStatus.BUSY and holder_is_dead(begin.holder):
            # Its holder was a process of this machine that died (a killed pool
            # child, whose message the broker redelivered at once): no need to wait
            # for its lease to run out.
            logger.warning("Taking over %s from dead claim %s", describe(delivery), begin.holder)
            begin = await store.begin(delivery, token, take_over=begin.holder)
        status = begin.status
        if status is BeginStatus.EXPIRED and begin.run is not None:
            await self._engine.expire(begin.run)
            return
        if status is BeginStatus.DUPLICATE:
            if begin.redispatch:
                # The first execution committed, then could not send what it released
                # (the broker was away): send it now, not at the next sweep.
                logger.warning(
                    "Re-sending %d delivery(ies) that the commit of %s released and that "
                    "never started",
                    len(begin.redispatch),
                    describe(delivery),
                )
                await self._dispatch(delivery.run_id, begin.redispatch)
            else:
                logger.debug("Skipped %s: already committed", describe(delivery))
            return
        if status is BeginStatus.EXHAUSTED and begin.run is not None:
            await self._give_up(delivery, begin.run, begin.begins)
            return
        if status is not BeginStatus.RUN or begin.run is None:
            level = logging.INFO if status is BeginStatus.BUSY else logging.DEBUG
            logger.log(level, "Skipped %s: %s", describe(delivery), status.value)
            return
        try:
            result, commit = await self._execute_claimed(delivery, begin, begin.run)
        except BackendError:
            if begin.token is not None:
                if len(self._held) >= _HELD_CLAIMS_MAX:
                    self._held.pop(next(iter(self._held)))
                self._held[delivery.delivery_id] = begin.token
            raise
        await self._after(delivery.run_id, result, commit)

    async def _execute_claimed(
        self, delivery: Delivery, begin: Begin, run: RunRecord
    ) -> tuple[CommitResult, Commit]:
        store = self._engine.store
        workflow = self._engine.workflow_for(delivery)
        plan = workflow._plan()
        slots = self._slots.setdefault((delivery.run_id, delivery.step), set())
        slot = next(i for i in range(len(slots) + 1) if i not in slots)
        slots.add(slot)
        await store.append_stream(
            delivery.run_id,
            [
                StepStateChanged(
                    name=delivery.step,
                    step_state=StepState.RUNNING,
                    worker_id=str(slot),
                    input_event_name=type(delivery.event).__name__,
                )
            ],
        )
        scope = StepScope(delivery, worker_id=str(slot))
        heartbeat = _Heartbeat(store, delivery, begin)
        try:
            outcome = await self._run_body(workflow, plan, delivery, scope, run)
            commit = await self._commit_for(plan, delivery, outcome, scope, run)
            commit = dataclasses.replace(commit, token=begin.token)
            result = await store.commit(delivery.run_id, commit)
        finally:
            heartbeat.stop()
            slots.discard(slot)
            if not slots:
                self._slots.pop((delivery.run_id, delivery.step), None)
        if not result.committed and not result.status.finished:
            logger.info(
                "The commit of %s changed nothing: it was committed already, or another "
                "execution claimed it after this one's lease ran out",
                describe(delivery),
            )
        return result, commit

    async def _give_up(self, delivery: Delivery, run: RunRecord, begins: int) -> None:
        """Fail a delivery started too many times without a commit (DeliveryLimitError)."""
        error = DeliveryLimitError(
            f"Step {delivery.step!r} of run {delivery.run_id!r} was started {begins - 1} "
            f"time(s) for the same event ({type(delivery.event).__name__}) and never "
            "finished: each time its worker process died (a crash, a hard time limit, "
            "the OOM killer) or lost the message. It is not delivered again."
        )
        logger.error("%s: %s", describe(delivery), error)
        workflow = self._engine.workflow_for(delivery)
        done = StepStateChanged(
            name=delivery.step,
            step_state=StepState.NOT_RUNNING,
            worker_id=str(delivery.attempt - 1),
            input_event_name=str(type(delivery.event)),
        )
        failed = Failed(error, f"{type(error).__qualname__}: {error}")
        commit = self._failure_commit(workflow._plan(), delivery, failed, run, done, retry=False)
        result = await self._engine.store.commit(delivery.run_id, commit)
        await self._after(delivery.run_id, result, commit)

    # --- the step body ------------------------------------------------------------

    async def _run_body(
        self, workflow: Workflow, plan: Plan, delivery: Delivery, scope: StepScope, run: RunRecord
    ) -> Outcome:
        from stalkflow.context.context import Context

        config = plan.configs[delivery.step]
        func = plan.steps[delivery.step]
        ctx: Context[Any] = Context._for_step(workflow, self._engine, run, scope)
        kwargs: dict[str, Any] = {config.event_name: delivery.event}
        if config.context_parameter:
            kwargs[config.context_parameter] = ctx
        limit = config.celery.soft_time_limit or self.settings.step_timeout_s
        token = enter(ctx)
        try:
            if config.resources:
                kwargs.update(await resolve_resources(workflow.resource_manager, config.resources))
            if config.is_async:
                value = await _limited(func(**kwargs), limit, delivery)
            else:
                call = functools.partial(contextvars.copy_context().run, func, **kwargs)
                running = asyncio.get_running_loop().run_in_executor(None, call)
                value = await _limited(running, limit, delivery)
            await scope.flush_writes()
            if value is not None and not isinstance(value, Event):
                raise WorkflowRuntimeError(
                    f"Step function {delivery.step} returned {type(value).__name__} "
                    "instead of an Event instance."
                )
            return Returned(value)
        except WaitingForEvent as waiting:
            await scope.flush_writes()
            return Waiting(waiting.waiter, waiting.waiter_event)
        except Exception as exc:
            await scope.flush_writes()
            return Failed(exc, traceback.format_exc())
        finally:
            leave(token)

    # --- the commit ---------------------------------------------------------------

    async def _commit_for(
        self, plan: Plan, delivery: Delivery, outcome: Outcome, scope: StepScope, run: RunRecord
    ) -> Commit:
        done = StepStateChanged(
            name=delivery.step,
            step_state=StepState.NOT_RUNNING,
            worker_id=scope.worker_id,
            input_event_name=str(type(delivery.event)),
            output_event_name=(
                str(type(outcome.event))
                if isinstance(outcome, Returned) and outcome.event
                else None
            ),
        )
        if isinstance(outcome, Failed):
            failure = self._failure_commit(plan, delivery, outcome, run, done)
            if not scope.sent or failure.outcome is not None:
                return failure
            # Events a failed attempt already sent are delivered, as upstream's are
            # (it routes them the moment they are sent); a retry sends its own.
            routed, resolved, stream, _ = await self._route(plan, delivery, scope.sent)
            return dataclasses.replace(
                failure,
                routed=[*failure.routed, *routed],
                resolved=[*failure.resolved, *resolved],
                stream=[*stream, *failure.stream],
            )
        outputs = list(scope.sent)
        if isinstance(outcome, Returned) and outcome.event is not None:
            outputs.append((outcome.event, None))
        routed, resolved, stream, stop = await self._route(plan, delivery, outputs)
        stream.append(done)
        if isinstance(outcome, Waiting):
            return Commit(
                delivery=delivery,
                routed=routed,
                resolved=resolved,
                waiter=outcome.waiter,
                waiter_event=outcome.waiter_event,
                stream=stream,
            )
        completion = None
        if stop is not None:
            completion = RunOutcome(RunStatus.COMPLETED, result=stop, terminal_event=stop)
        return Commit(
            delivery=delivery, routed=routed, resolved=resolved, stream=stream, outcome=completion
        )

    async def _route(
        self, plan: Plan, parent: Delivery, outputs: Sequence[tuple[Event, str | None]]
    ) -> tuple[list[Delivery], list[tuple[str, Delivery]], list[Event], StopEvent | None]:
        routed: list[Delivery] = []
        resolved: list[tuple[str, Delivery]] = []
        stream: list[Event] = []
        stop: StopEvent | None = None
        waiters = await self._engine.store.waiters(parent.run_id) if outputs else ()
        for position, (event, target) in enumerate(outputs):
            if isinstance(event, StopEvent):
                stop = stop or event
                continue
            if isinstance(event, InputRequiredEvent):
                stream.append(event)
            route = plan.routing.route(event, step=target, waiters=waiters)
            for step_name in route.steps:
                routed.append(
                    Delivery(
                        run_id=parent.run_id,
                        workflow=parent.workflow,
                        step=step_name,
                        event=event,
                        delivery_id=child_delivery_id(parent.delivery_id, position, step_name),
                        recoveries=parent.recoveries,
                    )
                )
            for waiter in route.waiters:
                redelivery = dataclasses.replace(
                    waiter.delivery,
                    delivery_id=child_delivery_id(parent.delivery_id, position, waiter.waiter_id),
                    resolved={**waiter.delivery.resolved, waiter.waiter_id: event},
                )
                resolved.append((waiter.waiter_id, redelivery))
            if route.unhandled and not is_expected_unhandled(event):
                kind = type(event)
                stream.append(
                    UnhandledEvent(
                        event_type=kind.__name__,
                        qualified_name=f"{kind.__module__}.{kind.__name__}",
                        step_name=target,
                        idle=False,
                    )
                )
        return routed, resolved, stream, stop

    def _failure_commit(
        self,
        plan: Plan,
        delivery: Delivery,
        failed: Failed,
        run: RunRecord,
        done: Event,
        *,
        retry: bool = True,
    ) -> Commit:
        now = time.time()
        error = failed.error
        info = ErrorInfo.from_exception(error, step=delivery.step, traceback=failed.traceback)
        first = delivery.first_attempt_at or now
        elapsed = now - first
        config = plan.configs[delivery.step]
        policy = config.retry_policy
        if retry and policy is not None and isinstance(error, Exception):
            seed = retry_seed(delivery.run_id, delivery.step, delivery.attempt)
            delay = call_policy(policy, elapsed, delivery.attempt, error, seed)
            if delay is not None:
                again = dataclasses.replace(delivery.retried(info, now), first_attempt_at=first)
                countdown_max = self.settings.countdown_max_s
                return Commit(
                    delivery=delivery,
                    retry=again,
                    retry_delay_s=float(delay),
                    retry_in_store=countdown_max is not None and float(delay) > countdown_max,
                    stream=[done],
                )
        logger.warning(
            "step %s of run %s failed after %d attempt(s): %r",
            delivery.step,
            delivery.run_id,
            delivery.attempt,
            error,
        )
        handler = plan.catch_handlers.get(delivery.step)
        if handler is not None and isinstance(error, Exception):
            budget = plan.configs[handler].catch_error_max_recoveries
            if delivery.recoveries.get(handler, 0) < budget:
                failed_event = StepFailedEvent(
                    step_name=delivery.step,
                    input_event=delivery.event,
                    exception=error,
                    attempts=delivery.attempt,
                    elapsed_seconds=elapsed,
                    failed_at=_utc(now),
                )
                recovery = Delivery(
                    run_id=delivery.run_id,
                    workflow=delivery.workflow,
                    step=handler,
                    event=failed_event,
                    delivery_id=child_delivery_id(delivery.delivery_id, 0, handler),
                    recoveries={
                        **delivery.recoveries,
                        handler: delivery.recoveries.get(handler, 0) + 1,
                    },
                )
                return Commit(delivery=delivery, routed=[recovery], stream=[done])
        terminal = WorkflowFailedEvent(
            step_name=delivery.step,
            exception=error,
            attempts=delivery.attempt,
            elapsed_seconds=elapsed,
        )
        outcome = RunOutcome(RunStatus.FAILED, error=info, terminal_event=terminal)
        return Commit(delivery=delivery, stream=[done], outcome=outcome)

    # --- after the commit -----------------------------------------------------------

    async def _after(self, run_id: str, result: CommitResult, commit: Commit | None) -> None:
        engine = self._engine
        failure: BackendError | None = None
        if result.committed:
            sends: list[tuple[Sequence[Delivery], float]] = []
            if result.released:
                sends.append((result.released, 0.0))
            if commit is not None and commit.retry is not None and not commit.retry_in_store:
                sends.append(([commit.retry], commit.retry_delay_s))
            for deliveries, delay_s in sends:
                try:
                    await self._dispatch(run_id, deliveries, delay_s)
                except BackendError as exc:
                    failure = failure or exc
            if commit is not None and commit.waiter is not None:
                try:
                    await engine.schedule_waiter_timeout(run_id, commit.waiter)
                except BackendError as exc:
                    failure = failure or exc
        if failure is not None:
            # The commit stands; what it released is in the store. Raising makes the
            # transport retry or requeue this message, whose next execution re-sends
            # it (DUPLICATE + outbox); the sweep sends it otherwise.
            raise failure
        if result.status.finished:
            engine.transport.run_finished(run_id)
            return
        if result.committed and is_stalled(
            in_flight=result.in_flight, waiters=result.waiters, hitl=result.hitl
        ):
            run = await engine.store.get_run(run_id)
            if run is None or run.finished:
                return
            error = WorkflowStalledError(stalled_message(run_id, run.workflow), run_id=run_id)
            outcome = RunOutcome(
                RunStatus.FAILED,
                error=ErrorInfo.from_exception(error),
                terminal_event=WorkflowFailedEvent(
                    step_name="<stalled>", exception=error, attempts=0, elapsed_seconds=0.0
                ),
            )
            if await engine.store.finish_run(run_id, outcome):
                engine.transport.run_finished(run_id)

    async def _dispatch(
        self, run_id: str, deliveries: Sequence[Delivery], delay_s: float = 0.0
    ) -> None:
        """Send deliveries; if that fails, have the store's sweep send them instead."""
        try:
            await self._engine.transport.dispatch(deliveries, delay_s)
        except BackendError as exc:
            logger.warning(
                "Could not send %d delivery(ies) of run %s (%s); they stay in the store and "
                "are sent again by a redelivery or a sweep",
                len(deliveries),
                run_id,
                _first_line(exc),
            )
            with contextlib.suppress(BackendError):
                ids = [d.delivery_id for d in deliveries]
                await self._engine.store.redispatch_soon(run_id, ids, delay_s)
            raise

    # --- the sweep ------------------------------------------------------------------

    async def sweep_once(self) -> int:
        """Send deliveries the store hands out: retries now due, and those presumed lost.

        A delivery is presumed lost when its claim's lease ran out with no
        heartbeat (its worker died, or hangs with its event loop blocked), or
        when it was released and never started within the dispatch grace (its
        message was lost). Returns how many were sent.
        """
        workflows = self._engine.registry.names()
        if not workflows:
            return 0
        store = self._engine.store
        recovered = await store.sweep(self.settings.sweep_limit, workflows)
        by_run: dict[str, list[Delivery]] = {}
        for item in recovered:
            if not item.scheduled:
                logger.warning(
                    "Re-sending %s: no sign of life before its deadline (never sent, "
                    "its message was lost, or its worker died)",
                    describe(item.delivery),
                )
            by_run.setdefault(item.delivery.run_id, []).append(item.delivery)
        failure: BackendError | None = None
        for run_id, deliveries in by_run.items():
            try:
                await self._dispatch(run_id, deliveries)
            except BackendError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        return len(recovered)

    async def sweep_forever(self, interval_s: float) -> None:
        """``sweep_once`` every ``interval_s`` seconds, surviving store and broker outages."""
        failing = False
        while True:
            try:
                await self.sweep_once()
            except Exception as exc:
                if not failing:
                    logger.warning("Sweep failed, will retry: %s", _first_line(exc))
                failing = True
            else:
                if failing:
                    logger.info("Sweeps work again")
                failing = False
            await asyncio.sleep(interval_s)


class _Heartbeat:
    """Renews a claim's lease every third of the lease while a step body runs.

    Nothing is scheduled until a third of the lease has passed, so a short step
    costs one timer; the renewals themselves run as tasks on the same loop.
    """

    def __init__(self, store: Any, delivery: Delivery, begin: Begin) -> None:
        self._store = store
        self._delivery = delivery
        self._token = begin.token
        self._interval = begin.lease_s / 3
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False
        self._loop = asyncio.get_running_loop()
        if self._token is not None and self._interval > 0:
            self._timer = self._loop.call_later(self._interval, self._fire)

    def _fire(self) -> None:
        if not self._stopped:
            self._task = self._loop.create_task(self._beat())

    async def _beat(self) -> None:
        assert self._token is not None
        try:
            alive = await self._store.heartbeat(
                self._delivery.run_id, self._delivery.delivery_id, self._token
            )
        except Exception as exc:
            logger.warning("Heartbeat of %s failed: %s", describe(self._delivery), _first_line(exc))
            alive = True  # the store may come back before the lease runs out
        if not alive:
            logger.warning(
                "%s lost its claim (its lease ran out, or the run ended): another execution "
                "may run it; this one's commit will be refused",
                describe(self._delivery),
            )
            return
        if not self._stopped:
            self._timer = self._loop.call_later(self._interval, self._fire)

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()


async def _limited(awaitable: Awaitable[T], limit_s: float | None, delivery: Delivery) -> T:
    """Await a step body, failing it with ``StepTimeoutError`` after ``limit_s`` seconds.

    A coroutine body is cancelled; a synchronous body's thread cannot be stopped
    and runs on, but its result is ignored.
    """
    if limit_s is None:
        return await awaitable
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=limit_s)
    except BaseException:
        task.cancel()
        raise
    if task in done:
        return task.result()
    task.cancel()
    await asyncio.wait({task}, timeout=_UNWIND_S)
    raise StepTimeoutError(
        f"Step {delivery.step!r} of run {delivery.run_id!r} did not finish within its time "
        f"limit of {limit_s} s"
    )


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _utc(timestamp: float) -> Any:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(timestamp, tz=timezone.utc)
