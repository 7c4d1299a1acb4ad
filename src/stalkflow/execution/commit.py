"""The commit phase: a step's outcome becomes one ``Commit`` for the store to apply.

Pure decisions, no I/O: where each output goes (by exact type, or to a waiter
that matches it), whether a failure is retried (the step's retry policy),
recovered (``@catch_error``) or fails the run, and whether a StopEvent
completes the run. The executor reads the run's waiters (only when it has any)
and applies the commit.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from datetime import datetime, timezone

from stalkflow.context.step_scope import StepScope
from stalkflow.core.deliveries import Delivery, ErrorInfo, Waiter
from stalkflow.core.ids import child_delivery_id
from stalkflow.core.routing import is_expected_unhandled
from stalkflow.core.runs import RunOutcome, RunStatus
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
from stalkflow.execution.body import Failed, Outcome, Returned, Waiting
from stalkflow.execution.settings import ExecutionSettings, logger
from stalkflow.plan import Plan
from stalkflow.ports import Commit
from stalkflow.retry_policy import call_policy, retry_seed

#: An output of a step execution: an event, and the step it was sent to (or None).
Output = tuple[Event, str | None]


@dataclasses.dataclass(frozen=True)
class Routed:
    """Where a step's outputs go."""

    routed: list[Delivery]
    resolved: list[tuple[str, Delivery]]
    stream: list[Event]
    stop: StopEvent | None


def outputs_of(outcome: Outcome, scope: StepScope) -> list[Output]:
    """What an execution routes: the events it sent, then the one it returned.

    A failed attempt's sends are delivered too, as upstream's are (it routes
    them the moment they are sent); a retry sends its own.
    """
    outputs = list(scope.sent)
    if isinstance(outcome, Returned) and outcome.event is not None:
        outputs.append((outcome.event, None))
    return outputs


def commit_for(
    plan: Plan,
    settings: ExecutionSettings,
    delivery: Delivery,
    outcome: Outcome,
    outputs: Sequence[Output],
    waiters: Sequence[Waiter],
    worker_id: str = "0",
) -> Commit:
    """The commit of one execution of ``delivery`` that ended with ``outcome``.

    ``worker_id`` names the execution's slot among the step's (its notices show it).
    """
    done = StepStateChanged(
        name=delivery.step,
        step_state=StepState.NOT_RUNNING,
        worker_id=worker_id,
        input_event_name=str(type(delivery.event)),
        output_event_name=(
            str(type(outcome.event)) if isinstance(outcome, Returned) and outcome.event else None
        ),
    )
    if isinstance(outcome, Failed):
        failure = failure_commit(plan, settings, delivery, outcome, done)
        if not outputs or failure.outcome is not None:
            return failure
        sent = route(plan, delivery, outputs, waiters)
        return dataclasses.replace(
            failure,
            routed=[*failure.routed, *sent.routed],
            resolved=[*failure.resolved, *sent.resolved],
            stream=[*sent.stream, *failure.stream],
        )
    routing = route(plan, delivery, outputs, waiters)
    stream = [*routing.stream, done]
    if isinstance(outcome, Waiting):
        return Commit(
            delivery=delivery,
            routed=routing.routed,
            resolved=routing.resolved,
            waiter=outcome.waiter,
            waiter_event=outcome.waiter_event,
            waiter_timeout_in_store=settings.kept_in_store(outcome.waiter.timeout_s),
            stream=stream,
        )
    completion = None
    if routing.stop is not None:
        stop = routing.stop
        completion = RunOutcome(RunStatus.COMPLETED, result=stop, terminal_event=stop)
    return Commit(
        delivery=delivery,
        routed=routing.routed,
        resolved=routing.resolved,
        stream=stream,
        outcome=completion,
    )


def route(
    plan: Plan, parent: Delivery, outputs: Sequence[Output], waiters: Sequence[Waiter]
) -> Routed:
    """Route each output: to the steps accepting its exact type, or to a matching waiter."""
    routed: list[Delivery] = []
    resolved: list[tuple[str, Delivery]] = []
    stream: list[Event] = []
    stop: StopEvent | None = None
    for position, (event, target) in enumerate(outputs):
        if isinstance(event, StopEvent):
            stop = stop or event
            continue
        if isinstance(event, InputRequiredEvent):
            stream.append(event)
        decision = plan.routing.route(event, step=target, waiters=waiters)
        for step_name in decision.steps:
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
        for waiter in decision.waiters:
            redelivery = dataclasses.replace(
                waiter.delivery,
                delivery_id=child_delivery_id(parent.delivery_id, position, waiter.waiter_id),
                resolved={**waiter.delivery.resolved, waiter.waiter_id: event},
            )
            resolved.append((waiter.waiter_id, redelivery))
        if decision.unhandled and not is_expected_unhandled(event):
            kind = type(event)
            stream.append(
                UnhandledEvent(
                    event_type=kind.__name__,
                    qualified_name=f"{kind.__module__}.{kind.__name__}",
                    step_name=target,
                    idle=False,
                )
            )
    return Routed(routed, resolved, stream, stop)


def failure_commit(
    plan: Plan,
    settings: ExecutionSettings,
    delivery: Delivery,
    failed: Failed,
    done: Event,
    *,
    retry: bool = True,
) -> Commit:
    """A failed execution: retried by its policy, recovered by ``@catch_error``, or final."""
    now = time.time()
    error = failed.error
    info = ErrorInfo.from_exception(error, step=delivery.step, traceback=failed.traceback)
    first = delivery.first_attempt_at or now
    elapsed = now - first
    policy = plan.configs[delivery.step].retry_policy
    if retry and policy is not None and isinstance(error, Exception):
        seed = retry_seed(delivery.run_id, delivery.step, delivery.attempt)
        delay = call_policy(policy, elapsed, delivery.attempt, error, seed)
        if delay is not None:
            again = dataclasses.replace(delivery.retried(info, now), first_attempt_at=first)
            return Commit(
                delivery=delivery,
                retry=again,
                retry_delay_s=float(delay),
                retry_in_store=settings.kept_in_store(float(delay)),
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
                failed_at=datetime.fromtimestamp(now, tz=timezone.utc),
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
