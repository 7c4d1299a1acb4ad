"""Executing one delivery: begin, run the step body, commit, dispatch.

This is the same code on every engine: the embedded one calls it from an
asyncio task, a Celery worker from its task. Its decisions (where outputs go,
whether to retry, whether the run is done or stalled) are the pure functions of
``stalkflow.core``; the store applies them atomically.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import logging
import time
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stalkflow.context.step_scope import StepScope, WaitingForEvent, enter, leave
from stalkflow.core.deliveries import Delivery, ErrorInfo, Waiter
from stalkflow.core.ids import child_delivery_id
from stalkflow.core.routing import is_expected_unhandled
from stalkflow.core.runs import RunOutcome, RunRecord, RunStatus, is_stalled, stalled_message
from stalkflow.errors import WorkflowRuntimeError, WorkflowStalledError
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
from stalkflow.ports import BeginStatus, Commit, CommitResult
from stalkflow.resource import resolve_resources
from stalkflow.retry_policy import call_policy, retry_seed

if TYPE_CHECKING:
    from stalkflow.engine import Engine
    from stalkflow.plan import Plan
    from stalkflow.workflow import Workflow

logger = logging.getLogger("stalkflow.execution")


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

    async def execute(self, delivery: Delivery) -> None:
        store = self._engine.store
        if delivery.expires_waiter is not None:
            result = await store.expire_waiter(delivery.run_id, delivery.expires_waiter)
            await self._after(delivery.run_id, result, None)
            return
        begin = await store.begin(delivery)
        if begin.status is BeginStatus.EXPIRED and begin.run is not None:
            await self._engine.expire(begin.run)
            return
        if begin.status is not BeginStatus.RUN or begin.run is None:
            logger.debug("skipping delivery %s: %s", delivery.delivery_id, begin.status.value)
            return
        workflow = self._engine.workflow_for(delivery)
        plan = workflow._plan()
        await store.append_stream(
            delivery.run_id,
            [
                StepStateChanged(
                    name=delivery.step,
                    step_state=StepState.RUNNING,
                    worker_id=str(delivery.attempt - 1),
                    input_event_name=type(delivery.event).__name__,
                )
            ],
        )
        scope = StepScope(delivery)
        outcome = await self._run_body(workflow, plan, delivery, scope, begin.run)
        commit = await self._commit_for(plan, delivery, outcome, scope, begin.run)
        result = await store.commit(delivery.run_id, commit)
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
        token = enter(ctx)
        try:
            if config.resources:
                kwargs.update(await resolve_resources(workflow.resource_manager, config.resources))
            if config.is_async:
                value = await func(**kwargs)
            else:
                call = functools.partial(contextvars.copy_context().run, func, **kwargs)
                value = await asyncio.get_running_loop().run_in_executor(None, call)
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
            worker_id=str(delivery.attempt - 1),
            input_event_name=str(type(delivery.event)),
            output_event_name=(
                str(type(outcome.event))
                if isinstance(outcome, Returned) and outcome.event
                else None
            ),
        )
        if isinstance(outcome, Failed):
            return self._failure_commit(plan, delivery, outcome, run, done)
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
        self, plan: Plan, delivery: Delivery, failed: Failed, run: RunRecord, done: Event
    ) -> Commit:
        now = time.time()
        error = failed.error
        info = ErrorInfo.from_exception(error, step=delivery.step, traceback=failed.traceback)
        first = delivery.first_attempt_at or now
        elapsed = now - first
        config = plan.configs[delivery.step]
        policy = config.retry_policy
        if policy is not None and isinstance(error, Exception):
            seed = retry_seed(delivery.run_id, delivery.step, delivery.attempt)
            delay = call_policy(policy, elapsed, delivery.attempt, error, seed)
            if delay is not None:
                retry = dataclasses.replace(delivery.retried(info, now), first_attempt_at=first)
                return Commit(
                    delivery=delivery, retry=retry, retry_delay_s=float(delay), stream=[done]
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
            if delivery.recoveries < budget:
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
                    recoveries=delivery.recoveries + 1,
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
        if result.committed:
            if result.released:
                await engine.transport.dispatch(result.released)
            if commit is not None and commit.retry is not None:
                await engine.transport.dispatch([commit.retry], commit.retry_delay_s)
            if commit is not None and commit.waiter is not None:
                await engine.schedule_waiter_timeout(run_id, commit.waiter)
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


def _utc(timestamp: float) -> Any:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(timestamp, tz=timezone.utc)
