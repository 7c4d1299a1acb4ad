"""Edge cases where stalkflow follows llama-index-workflows' observable behaviour."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from typing import Annotated

import pytest

from stalkflow import Context, Workflow, catch_error, step
from stalkflow.context import PickleSerializer
from stalkflow.errors import WorkflowValidationError
from stalkflow.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StepFailedEvent,
    StepState,
    StepStateChanged,
    StopEvent,
)
from stalkflow.resource import Resource
from stalkflow.retry_policy import retry_policy, stop_after_attempt, wait_fixed
from stalkflow.testing import WorkflowTestRunner


class Count(Event):
    pass


class Next(Event):
    pass


class Marker(Event):
    pass


class Work(Event):
    n: int


async def test_events_sent_by_a_failed_attempt_are_still_delivered() -> None:
    # each failing attempt sends Count before raising; the counter step sees all of them
    class Flaky(Workflow):
        @step(retry_policy=retry_policy(wait=wait_fixed(0.01), stop=stop_after_attempt(5)))
        async def flaky(self, ctx: Context, ev: StartEvent) -> StopEvent:
            ctx.send_event(Count())
            count = await ctx.store.get("count", default=0)
            if count < 3:
                await asyncio.sleep(0.02)  # let the counter catch up before failing
                raise ValueError("not yet")
            return StopEvent(result=count)

        @step
        async def counter(self, ctx: Context, ev: Count) -> None:
            async with ctx.store.edit_state() as state:
                state["count"] = state.get("count", 0) + 1

    assert await Flaky(disable_validation=True, timeout=5).run() >= 3


async def test_each_catch_error_handler_has_its_own_recovery_budget() -> None:
    # a's handler recovers, then b fails downstream of that recovery: b's handler
    # must still have its budget of one
    class Chain(Workflow):
        @step
        async def a(self, ev: StartEvent) -> Next:
            raise RuntimeError("a failed")

        @step
        async def b(self, ev: Next) -> StopEvent:
            raise RuntimeError("b failed")

        @catch_error(for_steps=["a"])
        async def handle_a(self, ev: StepFailedEvent) -> Marker:
            return Marker()

        @step
        async def after_a(self, ev: Marker) -> Next:
            return Next()

        @catch_error(for_steps=["b"])
        async def handle_b(self, ev: StepFailedEvent) -> StopEvent:
            return StopEvent(result=f"recovered {ev.step_name}")

    assert await Chain(timeout=5).run() == "recovered b"


class Key:
    """A requirement value that cannot be pickled, equal to any other Key."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key)

    __hash__ = None  # type: ignore[assignment]


class Ask(Workflow):
    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        reply = await ctx.wait_for_event(
            HumanResponseEvent,
            waiter_event=InputRequiredEvent(prefix="name?"),
            waiter_id="name",
            requirements={"key": Key()},  # cannot be serialized: matched by type
            timeout=5,
        )
        return StopEvent(result=f"hello {reply.response}")


async def test_a_restored_waiter_can_be_answered_right_after_the_resume() -> None:
    workflow = Ask(timeout=10)
    handler = workflow.run()
    async for event in handler.stream_events():
        if isinstance(event, InputRequiredEvent):
            break
    saved = handler.ctx.to_dict(serializer=PickleSerializer())
    await handler.cancel_run()

    restored = Context.from_dict(workflow, saved, serializer=PickleSerializer())
    resumed = workflow.run(ctx=restored)
    resumed.ctx.send_event(HumanResponseEvent(response="ada", key=Key()))  # no stream read

    assert await asyncio.wait_for(resumed, 5) == "hello ada"


async def test_a_resumed_waiter_publishes_its_prompt_again() -> None:
    workflow = Ask(timeout=10)
    handler = workflow.run()
    async for event in handler.stream_events():
        if isinstance(event, InputRequiredEvent):
            break
    saved = handler.ctx.to_dict(serializer=PickleSerializer())
    await handler.cancel_run()

    resumed = workflow.run(ctx=Context.from_dict(workflow, saved, PickleSerializer()))
    async for event in resumed.stream_events():
        if isinstance(event, InputRequiredEvent):
            assert event.prefix == "name?"
            await resumed.send_event(HumanResponseEvent(response="bo", key=Key()))
    assert await resumed == "hello bo"


def test_validate_reports_a_failing_resource_factory_by_step_and_parameter() -> None:
    def broken() -> str:
        raise RuntimeError("factory failed")

    class Uses(Workflow):
        @step
        async def only(self, ev: StartEvent, value: Annotated[str, Resource(broken)]) -> StopEvent:
            return StopEvent(result=value)

    with pytest.raises(WorkflowValidationError) as raised:
        Uses(disable_validation=True).validate(validate_resources=True)
    assert "In step 'only', parameter 'value': factory failed" in str(raised.value)


async def test_running_steps_report_the_smallest_free_slot_as_worker_id() -> None:
    class Fan(Workflow):
        @step
        async def start(self, ctx: Context, ev: StartEvent) -> Work | None:
            for n in range(10):
                ctx.send_event(Work(n=n))
            return None

        @step(num_workers=10)
        async def work(self, ctx: Context, ev: Work) -> StopEvent | None:
            await asyncio.sleep(0.01)
            done = ctx.collect_events(ev, [Work] * 10)
            return None if done is None else StopEvent(result=len(done))

    result = await WorkflowTestRunner(Fan(timeout=5)).run()
    running = [
        e.worker_id
        for e in result.collected
        if isinstance(e, StepStateChanged)
        and e.step_state is StepState.RUNNING
        and e.name == "work"
    ]
    assert result.result == 10
    assert sorted(set(running), key=int) == [str(i) for i in range(10)]


async def test_finished_workflows_are_not_kept_alive_by_the_engine() -> None:
    class Short(Workflow):
        @step
        async def only(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result=1)

    refs = []
    for _ in range(3):
        workflow = Short()
        assert await workflow.run() == 1
        refs.append(weakref.ref(workflow))
        del workflow
    gc.collect()
    assert all(ref() is None for ref in refs)


async def test_a_loop_timer_left_by_a_step_does_not_keep_the_workflow_alive() -> None:
    # The timer's handle holds a copy of the step's contextvars, so the current
    # step Context must be held there by a weak reference only.
    timers: list[asyncio.TimerHandle] = []
    seen: list[bool] = []

    class Tiny(Workflow):
        @step
        async def only(self, ev: StartEvent) -> StopEvent:
            loop = asyncio.get_running_loop()
            timers.append(loop.call_later(3600, lambda: None))
            seen.append(Context.get_step_context() is not None)
            return StopEvent(result="done")

    refs = []
    try:
        for _ in range(3):
            workflow = Tiny()
            assert await workflow.run() == "done"
            refs.append(weakref.ref(workflow))
            del workflow
        gc.collect()
        assert seen == [True, True, True]
        assert all(ref() is None for ref in refs)
    finally:
        for timer in timers:
            timer.cancel()
