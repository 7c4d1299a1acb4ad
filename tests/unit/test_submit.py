"""The synchronous entry: ``wf.submit(...)``, ``RunHandle`` and ``stalkflow.get_run``.

Every test here is a plain (non-async) function, like a Flask view or a script:
no event loop of its own.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import stalkflow
from stalkflow import Context, RunHandle, Workflow, step
from stalkflow.errors import (
    RunFinishedError,
    RunNotFoundError,
    WorkflowCancelledByUser,
    WorkflowTimeoutError,
    WorkflowValidationError,
)
from stalkflow.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
)


class Progress(Event):
    n: int


class Greeter(Workflow):
    @step
    async def greet(self, ctx: Context, ev: StartEvent) -> StopEvent:
        ctx.write_event_to_stream(Progress(n=1))
        await ctx.store.set("greeted", ev.name)
        return StopEvent(result=f"hello {ev.name}")


class Failing(Workflow):
    @step
    async def explode(self, ev: StartEvent) -> StopEvent:
        raise LookupError(f"no such thing: {ev.get('what')}")


class AskName(Workflow):
    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        answer = await ctx.wait_for_event(
            HumanResponseEvent,
            waiter_event=InputRequiredEvent(prefix="name?"),
            timeout=10,
        )
        return StopEvent(result=f"hi {answer.response}")


class Sleeper(Workflow):
    started = threading.Event()

    @step
    async def sleep(self, ev: StartEvent) -> StopEvent:
        Sleeper.started.set()
        await asyncio.sleep(30)
        return StopEvent(result="woke up")


def first_input_request(handle: RunHandle) -> InputRequiredEvent:
    for event in handle.events(poll_s=0.1):
        if isinstance(event, InputRequiredEvent):
            return event
    raise AssertionError("the run's stream ended without an InputRequiredEvent")


def test_submit_returns_at_once_and_get_returns_the_result() -> None:
    handle = Greeter(timeout=5).submit(name="world")
    assert isinstance(handle, RunHandle)
    assert isinstance(handle.run_id, str) and handle.run_id
    assert handle.get(timeout=5) == "hello world"
    assert handle.status == "completed"


def test_submit_accepts_a_start_event() -> None:
    handle = Greeter(timeout=5).submit(StartEvent(name="event"))
    assert handle.get(timeout=5) == "hello event"


def test_events_of_a_finished_run_are_replayed_for_every_reader() -> None:
    handle = Greeter(timeout=5).submit(name="stream")
    handle.get(timeout=5)
    for _ in range(2):
        events = list(handle.events())
        assert [type(e) for e in events] == [Progress, StopEvent]
        assert events[-1].result == "hello stream"


def test_failing_run_get_raises_the_step_exception() -> None:
    handle = Failing(timeout=5).submit(what="unicorn")
    with pytest.raises(LookupError, match="no such thing: unicorn"):
        handle.get(timeout=5)
    assert handle.status == "failed"


def test_hitl_run_times_out_get_then_is_answered_through_the_handle() -> None:
    handle = AskName(timeout=10).submit()

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        handle.get(timeout=0.1)
    assert time.monotonic() - started < 2
    assert handle.status == "running"

    prompt = first_input_request(handle)
    assert prompt.prefix == "name?"
    handle.send_event(HumanResponseEvent(response="Grace"))
    assert handle.get(timeout=5) == "hi Grace"
    assert handle.status == "completed"

    with pytest.raises(RunFinishedError):
        handle.send_event(HumanResponseEvent(response="late"))


def test_cancel_stops_a_waiting_run() -> None:
    handle = AskName(timeout=10).submit()
    first_input_request(handle)
    assert handle.cancel() is True
    with pytest.raises(WorkflowCancelledByUser):
        handle.get(timeout=5)
    assert handle.status == "cancelled"
    assert handle.cancel() is False  # already finished


def test_cancel_stops_a_run_with_a_busy_step() -> None:
    Sleeper.started.clear()
    handle = Sleeper(timeout=60).submit()
    assert Sleeper.started.wait(5)
    started = time.monotonic()
    assert handle.cancel() is True
    with pytest.raises(WorkflowCancelledByUser):
        handle.get(timeout=5)
    assert time.monotonic() - started < 2


def test_get_run_reattaches_by_run_id() -> None:
    handle = AskName(timeout=10).submit()
    first_input_request(handle)

    again = stalkflow.get_run(handle.run_id)
    assert again.run_id == handle.run_id
    assert again.status == "running"
    again.send_event(HumanResponseEvent(response="Linus"))
    assert handle.get(timeout=5) == "hi Linus"
    assert again.get(timeout=5) == "hi Linus"
    assert stalkflow.get_run(handle.run_id).status == "completed"


def test_get_run_from_another_thread_sees_the_same_run() -> None:
    handle = AskName(timeout=10).submit()
    first_input_request(handle)
    results: list[object] = []

    def web_request() -> None:
        reattached = stalkflow.get_run(handle.run_id)
        reattached.send_event(HumanResponseEvent(response="Barbara"))
        results.append(reattached.get(timeout=5))

    worker = threading.Thread(target=web_request)
    worker.start()
    worker.join(10)
    assert results == ["hi Barbara"]
    assert handle.status == "completed"


def test_timed_out_run_reports_its_status_and_error() -> None:
    Sleeper.started.clear()
    handle = Sleeper(timeout=0.2).submit()
    assert Sleeper.started.wait(5)
    with pytest.raises(WorkflowTimeoutError, match="Currently active steps: sleep"):
        handle.get(timeout=5)
    assert handle.status == "timed_out"


def test_submit_of_an_invalid_workflow_raises_at_once() -> None:
    class Unfinished(Workflow):
        @step
        async def first(self, ev: StartEvent) -> Progress | StopEvent:
            return StopEvent()

    with pytest.raises(WorkflowValidationError, match="produced but never consumed"):
        Unfinished(timeout=5).submit()


def test_submit_returns_a_stop_event_subclass_as_itself() -> None:
    class Answer(StopEvent):
        text: str

    class Flow(Workflow):
        @step
        async def first(self, ev: StartEvent) -> Answer:
            return Answer(text=ev.text.upper())

    result = Flow(timeout=5).submit(text="shout").get(timeout=5)
    assert type(result) is Answer
    assert result.text == "SHOUT"


def test_get_run_of_an_unknown_id_raises_run_not_found() -> None:
    with pytest.raises(RunNotFoundError):
        stalkflow.get_run("nope")
