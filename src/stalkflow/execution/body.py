"""The execute phase: a step body runs, bound to its delivery, under its time limit.

Its outcome is one of ``Returned`` (an event or None), ``Waiting`` (the step
called ``wait_for_event`` for an event not there yet) or ``Failed`` (its
exception and traceback); the commit phase turns it into a ``Commit``.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import traceback
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from stalkflow.context.step_scope import StepScope, WaitingForEvent, enter, leave
from stalkflow.core.deliveries import Delivery, Waiter
from stalkflow.core.runs import RunRecord
from stalkflow.errors import StepTimeoutError, WorkflowRuntimeError
from stalkflow.events import Event
from stalkflow.observability.instrumentation import StepSpan
from stalkflow.resource import resolve_resources

if TYPE_CHECKING:
    from stalkflow.engine import Engine
    from stalkflow.plan import Plan
    from stalkflow.workflow import Workflow

T = TypeVar("T")

#: How long a step body cancelled at its time limit gets to unwind.
UNWIND_S = 1.0


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


async def run_body(
    engine: Engine,
    workflow: Workflow,
    plan: Plan,
    delivery: Delivery,
    scope: StepScope,
    run: RunRecord,
) -> Outcome:
    """Run the step of ``delivery`` once: async steps on the loop, sync steps in a thread."""
    from stalkflow.context.context import Context

    config = plan.configs[delivery.step]
    func = plan.steps[delivery.step]
    ctx: Context[Any] = Context._for_step(workflow, engine, run, scope)
    kwargs: dict[str, Any] = {config.event_name: delivery.event}
    if config.context_parameter:
        kwargs[config.context_parameter] = ctx
    limit = config.celery.soft_time_limit or engine.execution.step_timeout_s
    token = enter(ctx)
    try:
        if config.resources:
            kwargs.update(await resolve_resources(workflow.resource_manager, config.resources))
        # the step's instrument tags and span, set before its task or thread is made
        with StepSpan(delivery, func, kwargs) as span:
            if config.is_async:
                value = await limited(func(**kwargs), limit, delivery)
            else:
                call = functools.partial(contextvars.copy_context().run, func, **kwargs)
                running = asyncio.get_running_loop().run_in_executor(None, call)
                value = await limited(running, limit, delivery)
            span.returned(value)
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


async def limited(awaitable: Awaitable[T], limit_s: float | None, delivery: Delivery) -> T:
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
    await asyncio.wait({task}, timeout=UNWIND_S)
    raise StepTimeoutError(
        f"Step {delivery.step!r} of run {delivery.run_id!r} did not finish within its time "
        f"limit of {limit_s} s"
    )
