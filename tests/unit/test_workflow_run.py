"""Running workflows through the public API: steps, results, errors, limits, retries.

Everything here runs on the embedded engine (the default): in process, memory store.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from typing import Annotated, Any

import pytest

from stalkflow import Context, Workflow, catch_error, step
from stalkflow.errors import (
    WorkflowCancelledByUser,
    WorkflowRuntimeError,
    WorkflowStalledError,
    WorkflowTimeoutError,
    WorkflowValidationError,
)
from stalkflow.events import (
    Event,
    StartEvent,
    StepFailedEvent,
    StopEvent,
    WorkflowCancelledEvent,
    WorkflowFailedEvent,
    WorkflowTimedOutEvent,
)
from stalkflow.resource import Resource
from stalkflow.retry_policy import RetryInfo, retry_policy, stop_after_attempt, wait_fixed


class AEvent(Event):
    pass


class SubAEvent(AEvent):
    pass


class Item(Event):
    n: int


class Done(Event):
    n: int


class RetryEvent(Event):
    pass


class BoomError(Exception):
    """A user exception that must reach ``await handler`` unchanged."""


def fast_retry(attempts: int) -> Any:
    return retry_policy(wait=wait_fixed(0.01), stop=stop_after_attempt(attempts))


# --- step discovery -------------------------------------------------------------------


async def test_decorated_methods_are_steps_and_plain_methods_are_not() -> None:
    calls: list[str] = []

    class Flow(Workflow):
        def helper(self, ev: StartEvent) -> AEvent:  # not a step: no @step
            calls.append("helper")
            return AEvent()

        @step
        async def first(self, ev: StartEvent) -> AEvent:
            calls.append("first")
            return AEvent()

        @step()
        async def second(self, ev: AEvent) -> StopEvent:
            calls.append("second")
            return StopEvent(result="done")

    wf = Flow(timeout=5)
    assert await wf.run() == "done"
    assert calls == ["first", "second"]
    assert set(wf.events) == {StartEvent, AEvent, StopEvent}


async def test_subclass_method_with_same_name_overrides_the_step() -> None:
    class Base(Workflow):
        @step
        async def go(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result="base")

    class Child(Base):
        @step
        async def go(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result="child")

    assert await Base(timeout=5).run() == "base"
    assert await Child(timeout=5).run() == "child"


async def test_free_function_step_with_workflow_argument() -> None:
    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> AEvent:
            return AEvent(payload=ev.get("x"))

    @step(workflow=Flow)
    async def finish(ev: AEvent) -> StopEvent:
        return StopEvent(result=f"free:{ev.payload}")

    assert await Flow(timeout=5).run(x=7) == "free:7"


async def test_free_function_step_is_not_inherited_by_subclasses() -> None:
    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> AEvent:
            return AEvent()

    @step(workflow=Flow)
    async def finish(ev: AEvent) -> StopEvent:
        return StopEvent(result="ok")

    class Child(Flow):
        @step
        async def own_finish(self, ev: AEvent) -> StopEvent:
            return StopEvent(result="child")

    assert await Child(timeout=5).run() == "child"


def test_free_function_step_without_workflow_is_rejected() -> None:
    with pytest.raises(WorkflowValidationError, match="please pass a workflow class"):

        @step
        async def orphan(ev: StartEvent) -> StopEvent:
            return StopEvent()


def test_add_step_rejects_undecorated_function_and_duplicate_name() -> None:
    class Flow(Workflow):
        @step
        async def only(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

    async def plain(ev: StartEvent) -> StopEvent:
        return StopEvent()

    with pytest.raises(WorkflowValidationError, match="missing the `@step` decorator"):
        Flow.add_step(plain)

    with pytest.raises(WorkflowValidationError, match="A step only is already part"):

        @step(workflow=Flow)
        async def only(ev: StartEvent) -> StopEvent:
            return StopEvent()


# --- validation -----------------------------------------------------------------------


async def test_run_surfaces_produced_but_never_consumed() -> None:
    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> AEvent | StopEvent:
            return StopEvent()

    wf = Flow(timeout=5)
    with pytest.raises(WorkflowValidationError, match="produced but never consumed: AEvent"):
        wf.validate()
    with pytest.raises(WorkflowValidationError, match="produced but never consumed"):
        await wf.run()


async def test_run_surfaces_consumed_but_never_produced() -> None:
    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

        @step
        async def orphan(self, ev: AEvent) -> StopEvent:
            return StopEvent()

    with pytest.raises(WorkflowValidationError, match="consumed but never produced: AEvent"):
        await Flow(timeout=5).run()


def test_validate_returns_whether_the_workflow_takes_human_input() -> None:
    from stalkflow.events import HumanResponseEvent, InputRequiredEvent

    class Plain(Workflow):
        @step
        async def first(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

    class Hitl(Workflow):
        @step
        async def ask(self, ev: StartEvent) -> InputRequiredEvent:
            return InputRequiredEvent()

        @step
        async def answer(self, ev: HumanResponseEvent) -> StopEvent:
            return StopEvent()

    assert Plain(timeout=5).validate() is False
    assert Hitl(timeout=5).validate() is True


# --- start and stop events ------------------------------------------------------------


async def test_run_kwargs_become_start_event_attributes() -> None:
    seen: dict[str, Any] = {}

    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> StopEvent:
            seen["type"] = type(ev)
            seen["topic"] = ev.topic
            seen["n"] = ev.get("n")
            seen["missing"] = ev.get("missing", "dflt")
            return StopEvent(result=f"{ev.topic}-{ev['n']}")

    assert await Flow(timeout=5).run(topic="pirates", n=3) == "pirates-3"
    assert seen == {"type": StartEvent, "topic": "pirates", "n": 3, "missing": "dflt"}


class QueryStart(StartEvent):
    query: str
    limit: int = 2


class AnswerStop(StopEvent):
    answer: str
    hits: int


async def test_custom_start_event_fields_are_validated_from_kwargs() -> None:
    class Flow(Workflow):
        @step
        async def first(self, ev: QueryStart) -> StopEvent:
            assert isinstance(ev, QueryStart)
            return StopEvent(result=(ev.query, ev.limit))

    wf = Flow(timeout=5)
    assert wf.start_event_class is QueryStart
    assert await wf.run(query="q") == ("q", 2)
    assert await wf.run(start_event=QueryStart(query="z", limit=9)) == ("z", 9)
    with pytest.raises(
        WorkflowRuntimeError, match="Failed creating a start event of type 'QueryStart'"
    ):
        await wf.run(limit=3)  # the required `query` is missing


async def test_start_event_argument_must_be_a_start_event() -> None:
    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

    with pytest.raises(ValueError, match="must be an instance of 'StartEvent'"):
        await Flow(timeout=5).run(start_event=AEvent())  # type: ignore[arg-type]


async def test_await_returns_result_for_plain_stop_event() -> None:
    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result={"k": [1, 2]})

    result = await Flow(timeout=5).run()
    assert result == {"k": [1, 2]}


async def test_await_returns_the_stop_event_subclass_instance() -> None:
    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> AnswerStop:
            return AnswerStop(answer="42", hits=3)

    wf = Flow(timeout=5)
    assert wf.stop_event_class is AnswerStop
    handler = wf.run()
    result = await handler
    assert type(result) is AnswerStop
    assert (result.answer, result.hits) == ("42", 3)
    assert handler.get_stop_event() == result
    assert handler.is_done()


async def test_awaiting_a_handler_twice_returns_the_same_result() -> None:
    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result=[1])

    handler = Flow(timeout=5).run()
    assert await handler == [1]
    assert await handler == [1]


async def test_stop_event_ends_the_run_while_another_step_still_runs() -> None:
    never = asyncio.Event()
    loser_cancelled = asyncio.Event()

    class Flow(Workflow):
        @step
        async def quick(self, ev: StartEvent) -> StopEvent:
            await asyncio.sleep(0.01)
            return StopEvent(result="quick won")

        @step
        async def slow(self, ev: StartEvent) -> StopEvent:
            try:
                await never.wait()
            except asyncio.CancelledError:
                loser_cancelled.set()
                raise
            return StopEvent(result="slow won")

    assert await asyncio.wait_for(Flow(timeout=5).run(), 3) == "quick won"
    await asyncio.wait_for(loser_cancelled.wait(), 2)  # the still-running step is stopped


# --- failures -------------------------------------------------------------------------


async def test_step_exception_reaches_await_handler_as_itself() -> None:
    raised: list[BaseException] = []

    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> AEvent:
            return AEvent()

        @step
        async def second(self, ev: AEvent) -> StopEvent:
            error = BoomError("second exploded: 17")
            raised.append(error)
            raise error

    with pytest.raises(BoomError) as info:
        await Flow(timeout=5).run()
    assert type(info.value) is BoomError
    assert str(info.value) == "second exploded: 17"
    assert info.value is raised[0]


async def test_builtin_exception_keeps_its_type() -> None:
    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result={}["nope"])

    with pytest.raises(KeyError, match="nope"):
        await Flow(timeout=5).run()


async def test_non_event_return_fails_with_workflow_runtime_error() -> None:
    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> StopEvent:
            return "not an event"  # type: ignore[return-value]

    with pytest.raises(
        WorkflowRuntimeError, match="Step function first returned str instead of an Event"
    ):
        await Flow(timeout=5).run()


# --- routing --------------------------------------------------------------------------


async def test_routing_is_by_exact_type_not_subclass() -> None:
    received: list[str] = []

    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> AEvent | SubAEvent:
            return SubAEvent()

        @step
        async def takes_a(self, ev: AEvent) -> StopEvent:
            received.append(f"takes_a:{type(ev).__name__}")
            return StopEvent(result="a")

        @step
        async def takes_sub(self, ev: SubAEvent) -> StopEvent:
            received.append(f"takes_sub:{type(ev).__name__}")
            return StopEvent(result="sub")

    assert await Flow(timeout=5).run() == "sub"
    assert received == ["takes_sub:SubAEvent"]


async def test_subclass_event_is_not_delivered_to_parent_type_step() -> None:
    received: list[Event] = []

    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> SubAEvent:
            return SubAEvent()

        @step
        async def takes_a(self, ev: AEvent) -> StopEvent:
            received.append(ev)
            return StopEvent(result="a")

    with pytest.raises(WorkflowStalledError):
        await Flow(timeout=5, disable_validation=True).run()
    assert received == []


# --- sync steps -----------------------------------------------------------------------


async def test_sync_steps_run_and_can_send_events() -> None:
    class Flow(Workflow):
        @step
        def first(self, ctx: Context, ev: StartEvent) -> AEvent | None:
            ctx.send_event(AEvent(value=ev.get("v")))
            return None

        @step
        def second(self, ev: AEvent) -> StopEvent:
            time.sleep(0.001)  # blocking is fine in a sync step
            return StopEvent(result=ev.value * 2)

    assert await Flow(timeout=5).run(v=21) == 42


async def test_sync_step_does_not_block_the_event_loop() -> None:
    gate = asyncio.Event()
    loop = asyncio.get_running_loop()

    class Flow(Workflow):
        @step
        def blocker(self, ev: StartEvent) -> StopEvent:
            # Waits for the event loop to set the gate: only possible if the loop runs.
            deadline = time.monotonic() + 3
            while not gate.is_set() and time.monotonic() < deadline:
                time.sleep(0.005)
            return StopEvent(result=gate.is_set())

    handler = Flow(timeout=5).run()
    loop.call_later(0.02, gate.set)
    assert await handler is True


# --- concurrency limits ---------------------------------------------------------------


async def test_num_workers_caps_concurrent_executions_of_a_step() -> None:
    active = 0
    peak = 0

    class Flow(Workflow):
        @step
        async def fan_out(self, ctx: Context, ev: StartEvent) -> Item | None:
            for n in range(10):
                ctx.send_event(Item(n=n))
            return None

        @step(num_workers=2)
        async def work(self, ev: Item) -> Done:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.01)
            active -= 1
            return Done(n=ev.n)

        @step
        async def gather(self, ctx: Context, ev: Done) -> StopEvent | None:
            got = ctx.collect_events(ev, [Done] * 10)
            if got is None:
                return None
            return StopEvent(result=sorted(e.n for e in got))

    assert await Flow(timeout=10).run() == list(range(10))
    assert peak == 2


async def test_num_concurrent_runs_limits_whole_runs_of_one_instance() -> None:
    active = 0
    peak = 0

    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> StopEvent:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.02)
            active -= 1
            return StopEvent(result=ev.get("i"))

    wf = Flow(timeout=10, num_concurrent_runs=2)
    handlers = [wf.run(i=i) for i in range(5)]
    results = await asyncio.gather(*handlers)
    assert results == [0, 1, 2, 3, 4]
    assert peak == 2


async def test_a_run_that_fails_to_start_does_not_widen_num_concurrent_runs() -> None:
    active = 0
    peak = 0

    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> StopEvent:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.02)
            active -= 1
            return StopEvent()

    wf = Flow(timeout=10, num_concurrent_runs=1)
    run_id = f"taken-{uuid.uuid4().hex}"
    await wf.run(run_id=run_id)
    with pytest.raises(RuntimeError, match="already exists"):
        await wf.run(run_id=run_id)  # takes the slot, fails, gives it back once
    await asyncio.gather(*(wf.run() for _ in range(3)))
    assert peak == 1


async def test_without_num_concurrent_runs_runs_overlap() -> None:
    active = 0
    peak = 0

    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> StopEvent:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.02)
            active -= 1
            return StopEvent(result=None)

    wf = Flow(timeout=10)
    await asyncio.gather(*(wf.run() for _ in range(4)))
    assert peak == 4


# --- timeout, cancel, stall -----------------------------------------------------------


async def test_timeout_raises_and_names_the_active_steps() -> None:
    never = asyncio.Event()

    class Flow(Workflow):
        @step
        async def slow_step(self, ev: StartEvent) -> StopEvent:
            await never.wait()
            return StopEvent()

    started = time.monotonic()
    handler = Flow(timeout=0.2).run()
    with pytest.raises(WorkflowTimeoutError) as info:
        await handler
    assert time.monotonic() - started < 3
    message = str(info.value)
    assert "timed out after 0.2 seconds" in message
    assert "slow_step" in message
    events = [e async for e in handler.stream_events()]
    assert isinstance(events[-1], WorkflowTimedOutEvent)
    assert events[-1].active_steps == ["slow_step"]
    assert events[-1].timeout == 0.2


async def test_timeout_clock_starts_when_the_run_gets_its_slot() -> None:
    class Flow(Workflow):
        @step
        async def work(self, ev: StartEvent) -> StopEvent:
            await asyncio.sleep(0.05)
            return StopEvent(result=ev.get("i"))

    # Eight runs back to back take ~0.4 s, longer than the timeout; each run alone fits.
    wf = Flow(timeout=0.3, num_concurrent_runs=1)
    assert await asyncio.gather(*(wf.run(i=i) for i in range(8))) == list(range(8))


async def test_cancel_run_makes_await_raise_cancelled_by_user() -> None:
    entered = asyncio.Event()
    never = asyncio.Event()
    finished: list[str] = []

    class Flow(Workflow):
        @step
        async def waiting(self, ev: StartEvent) -> StopEvent:
            entered.set()
            await never.wait()
            finished.append("waiting")
            return StopEvent()

    handler = Flow(timeout=10).run()
    await asyncio.wait_for(entered.wait(), 5)
    await handler.cancel_run()
    with pytest.raises(WorkflowCancelledByUser):
        await handler
    assert finished == []
    events = [e async for e in handler.stream_events()]
    assert isinstance(events[-1], WorkflowCancelledEvent)
    assert handler.get_stop_event() == WorkflowCancelledEvent()


async def test_failed_run_streams_a_workflow_failed_event() -> None:
    class Flow(Workflow):
        @step
        async def broken(self, ev: StartEvent) -> StopEvent:
            raise BoomError("kaput")

    handler = Flow(timeout=5).run()
    events = [e async for e in handler.stream_events()]
    with pytest.raises(BoomError):
        await handler
    failed = events[-1]
    assert isinstance(failed, WorkflowFailedEvent)
    assert failed.step_name == "broken"
    assert failed.attempts == 1
    assert handler.get_stop_event() is None


async def test_unaccepted_event_stalls_the_run_quickly() -> None:
    class Orphan(Event):
        pass

    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> Orphan:
            return Orphan()

        @step
        async def never_reached(self, ev: AEvent) -> StopEvent:
            return StopEvent()

    started = time.monotonic()
    with pytest.raises(WorkflowStalledError, match="stalled"):
        await Flow(timeout=10, disable_validation=True).run()
    assert time.monotonic() - started < 2


# --- retry policies -------------------------------------------------------------------


async def test_retry_policy_reruns_a_failing_step_until_it_succeeds() -> None:
    infos: list[RetryInfo] = []

    class Flow(Workflow):
        @step(retry_policy=fast_retry(3))
        async def flaky(self, ctx: Context, ev: StartEvent) -> StopEvent:
            infos.append(ctx.retry_info())
            if len(infos) < 3:
                raise ValueError(f"attempt {len(infos)} failed")
            return StopEvent(result=f"ok after {len(infos)}")

    assert await Flow(timeout=5).run() == "ok after 3"
    assert [i.retry_number for i in infos] == [0, 1, 2]
    first, second, third = infos
    assert first.last_exception is None
    assert first.last_failed_at is None
    assert first.elapsed_seconds == 0.0
    assert isinstance(second.last_exception, ValueError)
    assert str(second.last_exception) == "attempt 1 failed"
    assert str(third.last_exception) == "attempt 2 failed"
    assert isinstance(second.last_failed_at, datetime)
    assert second.last_failed_at.tzinfo is not None
    assert third.last_failed_at is not None and third.last_failed_at >= second.last_failed_at
    # At least two waits of 0.01 s have passed by the third attempt.
    assert third.elapsed_seconds >= 0.015
    assert third.elapsed_seconds >= second.elapsed_seconds


async def test_exhausted_retries_raise_the_step_exception() -> None:
    attempts = 0

    class Flow(Workflow):
        @step(retry_policy=fast_retry(3))
        async def always_fails(self, ev: StartEvent) -> StopEvent:
            nonlocal attempts
            attempts += 1
            raise BoomError(f"failure #{attempts}")

    with pytest.raises(BoomError, match="failure #3"):
        await Flow(timeout=5).run()
    assert attempts == 3


async def test_without_retry_policy_first_failure_is_final() -> None:
    attempts = 0

    class Flow(Workflow):
        @step
        async def fails(self, ev: StartEvent) -> StopEvent:
            nonlocal attempts
            attempts += 1
            raise BoomError("once")

    with pytest.raises(BoomError):
        await Flow(timeout=5).run()
    assert attempts == 1


# --- @catch_error ---------------------------------------------------------------------


async def test_catch_error_handler_returning_stop_event_completes_the_run() -> None:
    failures: list[StepFailedEvent] = []

    class Flow(Workflow):
        @step(retry_policy=fast_retry(2))
        async def fragile(self, ev: StartEvent) -> StopEvent:
            raise BoomError("fragile broke")

        @catch_error
        async def recover(self, ev: StepFailedEvent) -> StopEvent:
            failures.append(ev)
            return StopEvent(result=f"recovered from {ev.step_name}")

    assert await Flow(timeout=5).run() == "recovered from fragile"
    assert len(failures) == 1
    failed = failures[0]
    assert failed.step_name == "fragile"
    assert failed.attempts == 2
    assert isinstance(failed.exception, BoomError)
    assert str(failed.exception) == "fragile broke"
    assert isinstance(failed.input_event, StartEvent)


async def test_catch_error_for_steps_only_covers_the_listed_steps() -> None:
    caught: list[str] = []

    class Flow(Workflow):
        @step
        async def a(self, ev: StartEvent) -> AEvent:
            return AEvent()

        @step
        async def b(self, ev: AEvent) -> StopEvent:
            raise BoomError("b failed")

        @catch_error(for_steps=["a"])
        async def only_a(self, ev: StepFailedEvent) -> StopEvent:
            caught.append(ev.step_name)
            return StopEvent(result="caught")

    with pytest.raises(BoomError, match="b failed"):
        await Flow(timeout=5).run()
    assert caught == []


async def test_scoped_handler_wins_over_wildcard() -> None:
    class Flow(Workflow):
        @step
        async def a(self, ev: StartEvent) -> StopEvent:
            raise BoomError("a failed")

        @catch_error(for_steps=["a"])
        async def scoped(self, ev: StepFailedEvent) -> StopEvent:
            return StopEvent(result=("scoped", ev.step_name))

        @catch_error
        async def wildcard(self, ev: StepFailedEvent) -> StopEvent:
            return StopEvent(result=("wildcard", ev.step_name))

    assert await Flow(timeout=5).run() == ("scoped", "a")


async def test_exceeding_max_recoveries_raises_the_original_exception() -> None:
    calls: list[str] = []

    class Flow(Workflow):
        @step
        async def a(self, ev: StartEvent) -> StopEvent:
            calls.append("a")
            raise BoomError("a-fail")

        @catch_error
        async def recover(self, ev: StepFailedEvent) -> RetryEvent:
            calls.append(f"recover:{ev.step_name}")
            return RetryEvent()

        @step
        async def again(self, ev: RetryEvent) -> StopEvent:
            calls.append("again")
            raise BoomError("again-fail")

    with pytest.raises(BoomError, match="again-fail"):
        await Flow(timeout=5).run()
    assert calls == ["a", "recover:a", "again"]


async def test_max_recoveries_two_allows_a_second_recovery() -> None:
    calls: list[str] = []

    class Flow(Workflow):
        @step
        async def a(self, ev: StartEvent) -> StopEvent:
            calls.append("a")
            raise BoomError("a-fail")

        @catch_error(max_recoveries=2)
        async def recover(self, ev: StepFailedEvent) -> RetryEvent | StopEvent:
            calls.append(f"recover:{ev.step_name}")
            if ev.step_name == "again":
                return StopEvent(result="second recovery")
            return RetryEvent()

        @step
        async def again(self, ev: RetryEvent) -> StopEvent:
            calls.append("again")
            raise BoomError("again-fail")

    assert await Flow(timeout=5).run() == "second recovery"
    assert calls == ["a", "recover:a", "again", "recover:again"]


async def test_catch_error_handler_raising_fails_with_its_own_exception() -> None:
    class HandlerError(Exception):
        pass

    class Flow(Workflow):
        @step
        async def a(self, ev: StartEvent) -> StopEvent:
            raise BoomError("a-fail")

        @catch_error
        async def recover(self, ev: StepFailedEvent) -> StopEvent:
            raise HandlerError("handler-fail")

    with pytest.raises(HandlerError, match="handler-fail"):
        await Flow(timeout=5).run()


async def test_catch_error_is_not_invoked_while_retries_remain() -> None:
    calls: list[str] = []

    class Flow(Workflow):
        @step(retry_policy=fast_retry(3))
        async def a(self, ev: StartEvent) -> StopEvent:
            calls.append("a")
            if calls.count("a") < 2:
                raise BoomError("transient")
            return StopEvent(result="ok")

        @catch_error
        async def recover(self, ev: StepFailedEvent) -> StopEvent:
            calls.append("recover")
            return StopEvent(result="recovered")

    assert await Flow(timeout=5).run() == "ok"
    assert calls == ["a", "a"]


# --- resources ------------------------------------------------------------------------


class Client:
    def __init__(self, serial: int) -> None:
        self.serial = serial


async def test_resources_are_injected_and_cached_across_steps() -> None:
    made: list[Client] = []
    seen: list[Client] = []

    def make_client() -> Client:
        client = Client(len(made) + 1)
        made.append(client)
        return client

    class Flow(Workflow):
        @step
        async def first(
            self, ev: StartEvent, client: Annotated[Client, Resource(make_client)]
        ) -> AEvent:
            seen.append(client)
            return AEvent()

        @step
        async def second(
            self, ev: AEvent, client: Annotated[Client, Resource(make_client)]
        ) -> StopEvent:
            seen.append(client)
            return StopEvent(result=client.serial)

    wf = Flow(timeout=5)
    assert await wf.run() == 1
    assert await wf.run() == 1  # the same instance's cache serves the second run too
    assert len(made) == 1
    assert all(c is made[0] for c in seen) and len(seen) == 4


async def test_uncached_resource_is_made_per_step_execution() -> None:
    made: list[Client] = []

    async def make_client() -> Client:
        client = Client(len(made) + 1)
        made.append(client)
        return client

    class Flow(Workflow):
        @step
        async def first(
            self, ev: StartEvent, client: Annotated[Client, Resource(make_client, cache=False)]
        ) -> AEvent:
            return AEvent(serial=client.serial)

        @step
        async def second(
            self, ev: AEvent, client: Annotated[Client, Resource(make_client, cache=False)]
        ) -> StopEvent:
            return StopEvent(result=(ev.serial, client.serial))

    assert await Flow(timeout=5).run() == (1, 2)


# --- run ids and event loops ----------------------------------------------------------


async def test_run_id_is_used_and_a_duplicate_is_rejected() -> None:
    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result="ok")

    run_id = f"dup-{uuid.uuid4().hex}"
    wf = Flow(timeout=5)
    first = wf.run(run_id=run_id)
    assert first.run_id == run_id
    assert await first == "ok"
    with pytest.raises(RuntimeError, match=f"run_id '{run_id}' already exists"):
        await wf.run(run_id=run_id)


async def test_generated_run_ids_are_distinct() -> None:
    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

    wf = Flow(timeout=5)
    handlers = [wf.run() for _ in range(3)]
    await asyncio.gather(*handlers)
    ids = {h.run_id for h in handlers}
    assert len(ids) == 3
    assert all(isinstance(i, str) and i for i in ids)


def test_run_without_a_running_event_loop_raises_runtime_error() -> None:
    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

    with pytest.raises(RuntimeError, match="no running event loop"):
        Flow(timeout=5).run()
