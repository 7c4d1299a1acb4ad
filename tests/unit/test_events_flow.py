"""Event flow through the public API: send_event, collect_events, HITL, streaming."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stalkflow import Context, Workflow, step
from stalkflow.errors import ContextStateError, WorkflowRuntimeError
from stalkflow.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StepState,
    StepStateChanged,
    StopEvent,
)
from stalkflow.retry_policy import retry_policy, stop_after_attempt, wait_fixed
from stalkflow.testing import WorkflowTestRunner


class AEvent(Event):
    pass


class BEvent(Event):
    pass


class CEvent(Event):
    pass


class Part(Event):
    n: int


class Question(Event):
    text: str


class Progress(Event):
    n: int


class Partial(Event):
    label: str
    nums: list[int]


async def drain_answering(handler: Any, answer: Any) -> list[Event]:
    """Read the whole stream, answering every InputRequiredEvent with ``answer(ev)``."""
    seen: list[Event] = []
    async for event in handler.stream_events():
        seen.append(event)
        if isinstance(event, InputRequiredEvent):
            await handler.send_event(answer(event))
    return seen


# --- send_event -----------------------------------------------------------------------


async def test_send_event_to_an_unknown_step_fails_the_step() -> None:
    class Flow(Workflow):
        @step
        async def first(self, ctx: Context, ev: StartEvent) -> AEvent | None:
            ctx.send_event(AEvent(), step="does_not_exist")
            return None

        @step
        async def second(self, ev: AEvent) -> StopEvent:
            return StopEvent()

    with pytest.raises(WorkflowRuntimeError, match="Step does_not_exist does not exist"):
        await Flow(timeout=5).run()


async def test_send_event_of_a_type_the_step_does_not_accept_fails() -> None:
    class Flow(Workflow):
        @step
        async def first(self, ctx: Context, ev: StartEvent) -> AEvent | None:
            ctx.send_event(BEvent(), step="second")
            return None

        @step
        async def second(self, ev: AEvent) -> StopEvent:
            return StopEvent()

    with pytest.raises(WorkflowRuntimeError, match="Step second does not accept event of type"):
        await Flow(timeout=5, disable_validation=True).run()


async def test_send_event_from_handler_side_checks_the_target_at_once() -> None:
    gate = asyncio.Event()

    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> StopEvent:
            await gate.wait()
            return StopEvent(result="ok")

        @step
        async def other(self, ev: AEvent) -> None:
            return None

    handler = Flow(timeout=5, disable_validation=True).run()
    with pytest.raises(WorkflowRuntimeError, match="Step nope does not exist"):
        handler.ctx.send_event(AEvent(), step="nope")
    with pytest.raises(WorkflowRuntimeError, match="does not accept event of type"):
        await handler.send_event(BEvent(), step="other")
    gate.set()
    assert await handler == "ok"


async def test_send_event_with_step_reaches_only_that_step() -> None:
    received: list[str] = []

    class Flow(Workflow):
        @step
        async def first(self, ctx: Context, ev: StartEvent) -> AEvent | None:
            ctx.send_event(AEvent(), step="right")
            return None

        @step
        async def left(self, ev: AEvent) -> StopEvent:
            received.append("left")
            return StopEvent(result="left")

        @step
        async def right(self, ev: AEvent) -> StopEvent:
            received.append("right")
            return StopEvent(result="right")

    assert await Flow(timeout=5).run() == "right"
    assert received == ["right"]


def test_send_event_before_run_raises_context_state_error() -> None:
    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

    ctx: Context = Context(Flow(timeout=5))
    with pytest.raises(ContextStateError) as caught:
        ctx.send_event(StartEvent())
    assert str(caught.value) == (
        "send_event() called before workflow started. Call workflow.run() first."
    )
    # the phase is checked first, as upstream does: not the step name
    with pytest.raises(ContextStateError):
        ctx.send_event(StartEvent(), step="no_such_step")


# --- collect_events -------------------------------------------------------------------


async def test_collect_events_returns_one_complete_set_in_expected_order() -> None:
    completions: list[list[str]] = []
    calls = 0

    class Flow(Workflow):
        @step
        async def fan_out(self, ctx: Context, ev: StartEvent) -> AEvent | BEvent | CEvent | None:
            # sent in an order different from the one the join expects
            ctx.send_event(CEvent())
            ctx.send_event(AEvent())
            ctx.send_event(BEvent())
            return None

        @step
        async def join(self, ctx: Context, ev: AEvent | BEvent | CEvent) -> StopEvent | None:
            nonlocal calls
            calls += 1
            got = ctx.collect_events(ev, [AEvent, BEvent, CEvent])
            if got is None:
                return None
            completions.append([type(e).__name__ for e in got])
            return StopEvent(result=len(got))

    assert await Flow(timeout=5).run() == 3
    assert calls == 3
    assert completions == [["AEvent", "BEvent", "CEvent"]]


async def test_collect_events_with_many_concurrent_arrivals_completes_exactly_once() -> None:
    completions: list[list[int]] = []

    class Flow(Workflow):
        @step
        async def fan_out(self, ctx: Context, ev: StartEvent) -> Part | None:
            for n in range(20):
                ctx.send_event(Part(n=n))
            return None

        @step(num_workers=8)
        async def join(self, ctx: Context, ev: Part) -> StopEvent | None:
            await asyncio.sleep(0)
            got = ctx.collect_events(ev, [Part] * 20)
            if got is None:
                return None
            completions.append(sorted(e.n for e in got))
            return StopEvent(result="joined")

    assert await Flow(timeout=5).run() == "joined"
    assert completions == [list(range(20))]


async def test_collect_events_ignores_types_not_expected() -> None:
    class Flow(Workflow):
        @step
        async def fan_out(self, ctx: Context, ev: StartEvent) -> AEvent | BEvent | None:
            ctx.send_event(BEvent())
            ctx.send_event(AEvent())
            ctx.send_event(AEvent())
            return None

        @step
        async def join(self, ctx: Context, ev: AEvent | BEvent) -> StopEvent | None:
            got = ctx.collect_events(ev, [AEvent, AEvent])
            if got is None:
                return None
            return StopEvent(result=[type(e).__name__ for e in got])

    assert await Flow(timeout=5).run() == ["AEvent", "AEvent"]


async def test_collect_events_buffers_are_separate_per_buffer_id() -> None:
    class Flow(Workflow):
        @step
        async def fan_out(self, ctx: Context, ev: StartEvent) -> Part | Progress | None:
            for n in range(3):
                ctx.send_event(Part(n=n))
                ctx.send_event(Progress(n=10 + n))
            return None

        @step
        async def per_kind(self, ctx: Context, ev: Part | Progress) -> Partial | None:
            if isinstance(ev, Part):
                got = ctx.collect_events(ev, [Part] * 3, buffer_id="parts")
                label = "parts"
            else:
                got = ctx.collect_events(ev, [Progress] * 3, buffer_id="progress")
                label = "progress"
            if got is None:
                return None
            return Partial(label=label, nums=sorted(e.n for e in got))

        @step
        async def final(self, ctx: Context, ev: Partial) -> StopEvent | None:
            got = ctx.collect_events(ev, [Partial, Partial])
            if got is None:
                return None
            return StopEvent(result={p.label: p.nums for p in got})

    result = await Flow(timeout=5).run()
    assert result == {"parts": [0, 1, 2], "progress": [10, 11, 12]}


async def test_retried_step_that_completed_a_collect_set_gets_the_set_again() -> None:
    attempts: dict[int, int] = {}

    class Flow(Workflow):
        @step
        async def fan_out(self, ctx: Context, ev: StartEvent) -> Part | None:
            for n in range(3):
                ctx.send_event(Part(n=n))
            return None

        @step(retry_policy=retry_policy(wait=wait_fixed(0.01), stop=stop_after_attempt(3)))
        async def join(self, ctx: Context, ev: Part) -> StopEvent | None:
            attempts[ev.n] = attempts.get(ev.n, 0) + 1
            got = ctx.collect_events(ev, [Part] * 3)
            if got is None:
                return None
            if attempts[ev.n] == 1:
                raise ConnectionError("transient failure after the set was complete")
            return StopEvent(result=sorted(e.n for e in got))

    assert await Flow(timeout=5).run() == [0, 1, 2]


async def test_collect_events_with_empty_expected_returns_empty_list() -> None:
    class Flow(Workflow):
        @step
        async def only(self, ctx: Context, ev: StartEvent) -> StopEvent:
            return StopEvent(result=ctx.collect_events(ev, []))

    assert await Flow(timeout=5).run() == []


# --- wait_for_event (HITL) ------------------------------------------------------------


async def test_wait_for_event_round_trip_reruns_the_step_from_the_top() -> None:
    executions = 0

    class Flow(Workflow):
        @step
        async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
            nonlocal executions
            executions += 1
            answer = await ctx.wait_for_event(
                HumanResponseEvent,
                waiter_event=InputRequiredEvent(prefix="Your name?"),
                timeout=5,
            )
            return StopEvent(result=f"Hello, {answer.response}!")

    handler = Flow(timeout=5).run()
    prompts: list[str] = []

    def answer(event: InputRequiredEvent) -> HumanResponseEvent:
        prompts.append(event.prefix)
        return HumanResponseEvent(response="Ada")

    seen = await drain_answering(handler, answer)
    assert await handler == "Hello, Ada!"
    assert prompts == ["Your name?"]
    assert executions == 2
    assert isinstance(seen[-1], StopEvent)


async def test_wait_for_event_honours_requirements() -> None:
    class Flow(Workflow):
        @step
        async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
            answer = await ctx.wait_for_event(
                HumanResponseEvent,
                waiter_event=InputRequiredEvent(prefix="approve?"),
                requirements={"user": "ada"},
                timeout=5,
            )
            return StopEvent(result=(answer.user, answer.response))

    handler = Flow(timeout=5).run()
    async for event in handler.stream_events():
        if isinstance(event, InputRequiredEvent):
            await handler.send_event(HumanResponseEvent(user="bob", response="no"))
            await handler.send_event(HumanResponseEvent(user="ada", response="yes"))
    assert await handler == ("ada", "yes")


async def test_an_answer_sent_right_after_run_reaches_the_step_about_to_wait_for_it() -> None:
    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> Question:
            return Question(text="Your name?")

        @step
        async def ask(self, ctx: Context, ev: Question) -> StopEvent:
            answer = await ctx.wait_for_event(HumanResponseEvent, timeout=5)
            return StopEvent(result=f"{ev.text} {answer.response}")

    for _ in range(3):
        handler = Flow(timeout=5).run()
        handler.ctx.send_event(HumanResponseEvent(response="Ada"))  # before anyone waits
        assert await handler == "Your name? Ada"


async def test_an_event_nobody_waits_for_does_not_hold_up_the_run() -> None:
    class Flow(Workflow):
        @step
        async def only(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result="done")

    handler = Flow(timeout=5).run()
    handler.ctx.send_event(HumanResponseEvent(response="unused"))
    assert await asyncio.wait_for(handler, 3) == "done"


async def test_wait_for_event_timeout_raises_timeout_error_in_the_step() -> None:
    outcomes: list[str] = []

    class Flow(Workflow):
        @step
        async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
            try:
                await ctx.wait_for_event(HumanResponseEvent, timeout=0.05)
            except asyncio.TimeoutError as exc:
                outcomes.append(str(exc))
                return StopEvent(result="gave up")
            return StopEvent(result="answered")

    assert await asyncio.wait_for(Flow(timeout=5).run(), 3) == "gave up"
    assert len(outcomes) == 1
    assert "HumanResponseEvent" in outcomes[0]


async def test_uncaught_waiter_timeout_fails_the_run_with_timeout_error() -> None:
    class Flow(Workflow):
        @step
        async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
            await ctx.wait_for_event(HumanResponseEvent, timeout=0.05)
            return StopEvent(result="answered")

    with pytest.raises(asyncio.TimeoutError, match="Timed out waiting for HumanResponseEvent"):
        await asyncio.wait_for(Flow(timeout=5).run(), 3)


class FirstAnswer(Event):
    value: str


class SecondAnswer(Event):
    value: str


async def test_two_sequential_waiters_rerun_the_step_once_per_answer() -> None:
    executions = 0

    class Flow(Workflow):
        @step
        async def interview(self, ctx: Context, ev: StartEvent) -> StopEvent:
            nonlocal executions
            executions += 1
            first = await ctx.wait_for_event(
                FirstAnswer, waiter_event=InputRequiredEvent(prefix="first"), timeout=5
            )
            second = await ctx.wait_for_event(
                SecondAnswer, waiter_event=InputRequiredEvent(prefix="second"), timeout=5
            )
            return StopEvent(result=f"{first.value}+{second.value}")

    handler = Flow(timeout=5).run()

    def answer(event: InputRequiredEvent) -> Event:
        if event.prefix == "first":
            return FirstAnswer(value="one")
        return SecondAnswer(value="two")

    seen = await drain_answering(handler, answer)
    assert await handler == "one+two"
    assert executions == 3
    assert [e.prefix for e in seen if isinstance(e, InputRequiredEvent)] == ["first", "second"]


async def test_an_event_sent_by_another_step_resolves_a_waiter() -> None:
    class Ready(Event):
        token: str

    release = asyncio.Event()

    class Flow(Workflow):
        @step
        async def waiter(self, ctx: Context, ev: StartEvent) -> StopEvent:
            ready = await ctx.wait_for_event(
                Ready, waiter_event=InputRequiredEvent(prefix="waiting"), timeout=5
            )
            return StopEvent(result=ready.token)

        @step
        async def producer(self, ctx: Context, ev: StartEvent) -> Ready | None:
            await release.wait()
            ctx.send_event(Ready(token="from producer"))
            return None

    handler = Flow(timeout=5, disable_validation=True).run()
    async for event in handler.stream_events():
        if isinstance(event, InputRequiredEvent):
            release.set()  # the waiter is registered: now let the producer send
    assert await handler == "from producer"


async def test_returned_input_required_event_answered_to_an_accepting_step() -> None:
    class Flow(Workflow):
        @step
        async def ask(self, ev: StartEvent) -> InputRequiredEvent:
            return InputRequiredEvent(prefix="pick a number")

        @step
        async def answer(self, ev: HumanResponseEvent) -> StopEvent:
            return StopEvent(result=int(ev.response) * 2)

    handler = Flow(timeout=5).run()
    prompts: list[str] = []

    def reply(event: InputRequiredEvent) -> HumanResponseEvent:
        prompts.append(event.prefix)
        return HumanResponseEvent(response="21")

    await drain_answering(handler, reply)
    assert await handler == 42
    assert prompts == ["pick a number"]


# --- streaming ------------------------------------------------------------------------


async def test_written_events_stream_in_order_before_the_stop_event() -> None:
    class Flow(Workflow):
        @step
        async def first(self, ctx: Context, ev: StartEvent) -> AEvent:
            for n in range(3):
                ctx.write_event_to_stream(Progress(n=n))
            ctx.write_event_to_stream(None)  # ignored
            return AEvent()

        @step
        async def second(self, ctx: Context, ev: AEvent) -> StopEvent:
            ctx.write_event_to_stream(Progress(n=3))
            return StopEvent(result="end")

    handler = Flow(timeout=5).run()
    events = [e async for e in handler.stream_events()]
    assert await handler == "end"
    assert [type(e) for e in events] == [Progress] * 4 + [StopEvent]
    assert [e.n for e in events[:4]] == [0, 1, 2, 3]
    assert events[-1].result == "end"


async def test_stream_delivers_a_running_steps_writes_before_it_finishes() -> None:
    release = asyncio.Event()

    class Flow(Workflow):
        @step
        async def long_step(self, ctx: Context, ev: StartEvent) -> StopEvent:
            ctx.write_event_to_stream(Progress(n=1))
            await release.wait()
            ctx.write_event_to_stream(Progress(n=2))
            return StopEvent(result="finished")

    handler = Flow(timeout=5).run()
    seen: list[Event] = []
    async for event in handler.stream_events():
        seen.append(event)
        if isinstance(event, Progress) and event.n == 1:
            assert not handler.is_done()
            release.set()  # only reachable if progress arrived while the step waited
    assert [type(e) for e in seen] == [Progress, Progress, StopEvent]
    assert await handler == "finished"


async def test_stream_events_can_be_consumed_only_once() -> None:
    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result=1)

    handler = Flow(timeout=5).run()
    _ = [e async for e in handler.stream_events()]
    with pytest.raises(WorkflowRuntimeError, match="already been consumed"):
        async for _event in handler.stream_events():
            pass
    assert await handler == 1


async def test_expose_internal_shows_step_state_changes() -> None:
    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> AEvent:
            return AEvent()

        @step
        async def second(self, ev: AEvent) -> StopEvent:
            return StopEvent(result="x")

    hidden = Flow(timeout=5).run()
    plain = [e async for e in hidden.stream_events()]
    await hidden
    assert not any(isinstance(e, StepStateChanged) for e in plain)

    shown = Flow(timeout=5).run()
    internal = [e async for e in shown.stream_events(expose_internal=True)]
    await shown
    changes = [(e.name, e.step_state) for e in internal if isinstance(e, StepStateChanged)]
    assert changes == [
        ("first", StepState.RUNNING),
        ("first", StepState.NOT_RUNNING),
        ("second", StepState.RUNNING),
        ("second", StepState.NOT_RUNNING),
    ]
    assert isinstance(internal[-1], StopEvent)


# --- step context ---------------------------------------------------------------------


async def test_get_step_context_inside_and_outside_a_step() -> None:
    same: list[bool] = []

    class Flow(Workflow):
        @step
        async def first(self, ctx: Context, ev: StartEvent) -> StopEvent:
            found = Context.get_step_context()
            same.append(found is ctx)
            await found.store.set("via", "step_context")
            return StopEvent(result=await ctx.store.get("via"))

    assert await Flow(timeout=5).run() == "step_context"
    assert same == [True]
    with pytest.raises(WorkflowRuntimeError, match="may only be called from within a step"):
        Context.get_step_context()


async def test_step_only_context_methods_fail_from_handler_code() -> None:
    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

    handler = Flow(timeout=5).run()
    await handler
    with pytest.raises(ContextStateError):
        handler.ctx.collect_events(StartEvent(), [StartEvent])
    with pytest.raises(ContextStateError):
        handler.ctx.write_event_to_stream(StartEvent())


# --- the test runner ------------------------------------------------------------------


async def test_workflow_test_runner_collects_and_counts_events() -> None:
    class Flow(Workflow):
        @step
        async def first(self, ctx: Context, ev: StartEvent) -> AEvent:
            ctx.write_event_to_stream(Progress(n=1))
            ctx.write_event_to_stream(Progress(n=2))
            return AEvent()

        @step
        async def second(self, ev: AEvent) -> StopEvent:
            return StopEvent(result="tested")

    result = await WorkflowTestRunner(Flow(timeout=5)).run()
    assert result.result == "tested"
    assert result.event_types[Progress] == 2
    assert result.event_types[StopEvent] == 1
    assert result.event_types[StepStateChanged] == 4  # internal events by default
    assert isinstance(result.collected[-1], StopEvent)
    assert isinstance(result.ctx, Context)

    visible = await WorkflowTestRunner(Flow(timeout=5)).run(
        expose_internal=False, exclude_events=[Progress]
    )
    assert visible.event_types == {StopEvent: 1}
