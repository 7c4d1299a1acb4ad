"""The deprecated ``Context`` members: ``get_result()``, ``streaming_queue`` and
``is_running`` read inside a step, which behave and warn as in llama-index-workflows
2.26 (its texts, once per process)."""

from __future__ import annotations

import asyncio
import re
import warnings

import pytest

from stalkflow import Context, Workflow, step
from stalkflow.context import deprecated
from stalkflow.errors import ContextStateError, WorkflowRuntimeError
from stalkflow.events import Event, StartEvent, StepStateChanged, StopEvent

GET_RESULT_TEXT = (
    "Context.get_result() is deprecated and will be removed in a future release. "
    "Prefer awaiting the WorkflowHandler returned by Workflow.run: "
    "`result = await workflow.run(..., ctx=ctx)`."
)
STREAMING_QUEUE_TEXT = (
    "Context.streaming_queue is deprecated and will be removed in a future release. "
    "Prefer iterating Context.stream_events(): `async for ev in ctx.stream_events(): ...`"
)
IS_RUNNING_TEXT = (
    "is_running called from within a step; the workflow is always running inside a step. "
    "This usage is deprecated."
)


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a process that has shown no deprecation warning yet."""
    monkeypatch.setattr(deprecated, "_shown", set())


class Progress(Event):
    n: int


class Answer(StopEvent):
    text: str


class Doubler(Workflow):
    @step
    async def double(self, ctx: Context, ev: StartEvent) -> StopEvent:
        for n in range(2):
            ctx.write_event_to_stream(Progress(n=n))
        return StopEvent(result=ev.get("x", 1) * 2)


def messages(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if w.category is DeprecationWarning]


# --- get_result ------------------------------------------------------------------------


async def test_get_result_returns_the_result_and_warns_with_upstreams_text() -> None:
    handler = Doubler(timeout=5).run(x=21)
    assert await handler == 42
    with pytest.warns(DeprecationWarning, match=re.escape(GET_RESULT_TEXT)):
        assert handler.ctx.get_result() == 42


async def test_get_result_of_a_stop_event_subclass_is_the_event() -> None:
    class Flow(Workflow):
        @step
        async def only(self, ev: StartEvent) -> Answer:
            return Answer(text="hi")

    handler = Flow(timeout=5).run()
    await handler
    with pytest.warns(DeprecationWarning):
        assert handler.ctx.get_result() == Answer(text="hi")


async def test_get_result_while_running_raises_not_complete() -> None:
    release = asyncio.Event()

    class Slow(Workflow):
        @step
        async def wait(self, ev: StartEvent) -> StopEvent:
            await release.wait()
            return StopEvent(result="late")

    handler = Slow(timeout=5).run()
    await asyncio.sleep(0.05)
    with pytest.warns(DeprecationWarning), pytest.raises(WorkflowRuntimeError) as caught:
        handler.ctx.get_result()
    assert str(caught.value) == f"Workflow run with run_id {handler.run_id} is not complete"
    release.set()
    assert await handler == "late"


async def test_get_result_raises_the_error_of_a_failed_run() -> None:
    class Failing(Workflow):
        @step
        async def boom(self, ev: StartEvent) -> StopEvent:
            raise KeyError("missing")

    handler = Failing(timeout=5).run()
    with pytest.raises(KeyError):
        await handler
    with pytest.warns(DeprecationWarning), pytest.raises(KeyError, match="missing"):
        handler.ctx.get_result()


async def test_get_result_and_streaming_queue_outside_handler_code_raise() -> None:
    seen: dict[str, str] = {}

    class Probe(Workflow):
        @step
        async def probe(self, ctx: Context, ev: StartEvent) -> StopEvent:
            for name in ("get_result", "streaming_queue"):
                try:
                    ctx.get_result() if name == "get_result" else ctx.streaming_queue
                except ContextStateError as exc:
                    seen[name] = str(exc)
            return StopEvent(result="done")

    workflow = Probe(timeout=5)
    fresh: Context = Context(workflow)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(ContextStateError) as before:
            fresh.get_result()
        with pytest.raises(ContextStateError) as before_queue:
            _ = fresh.streaming_queue
        assert await workflow.run() == "done"
    assert str(before.value) == "get_result requires a running workflow. Call workflow.run() first."
    assert str(before_queue.value) == (
        "streaming_queue requires a running workflow. Call workflow.run() first."
    )
    assert seen == {
        name: f"{name} is only available from handler code, not from within steps."
        for name in ("get_result", "streaming_queue")
    }


async def test_each_deprecation_warning_is_shown_once_per_process() -> None:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(2):
            handler = Doubler(timeout=5).run()
            queue = handler.ctx.streaming_queue
            await handler
            assert handler.ctx.get_result() == 2
            assert (await asyncio.wait_for(queue.get(), 5)) is not None
    assert messages(record) == [STREAMING_QUEUE_TEXT, GET_RESULT_TEXT]


# --- streaming_queue ---------------------------------------------------------------------


async def test_streaming_queue_is_filled_with_the_stream_up_to_the_stop_event() -> None:
    handler = Doubler(timeout=5).run(x=2)
    with pytest.warns(DeprecationWarning, match=re.escape(STREAMING_QUEUE_TEXT)):
        queue = handler.ctx.streaming_queue
    assert isinstance(queue, asyncio.Queue)
    received: list[Event] = []
    while not received or not isinstance(received[-1], StopEvent):
        received.append(await asyncio.wait_for(queue.get(), 5))
    assert await handler == 4
    published = [e for e in received if not isinstance(e, StepStateChanged)]
    assert published == [Progress(n=0), Progress(n=1), StopEvent(result=4)]
    # like upstream's context stream, the queue carries the internal events too
    assert any(isinstance(e, StepStateChanged) for e in received)


# --- is_running inside a step --------------------------------------------------------------


async def test_is_running_inside_a_step_warns_once_per_process_with_upstreams_text() -> None:
    record: list[warnings.WarningMessage] = []

    class Flow(Workflow):
        @step
        async def look(self, ctx: Context, ev: StartEvent) -> StopEvent:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                running = ctx.is_running
            record.extend(caught)
            return StopEvent(result=running)

    assert await Flow(timeout=5).run() is True
    assert await Flow(timeout=5).run() is True
    assert messages(record) == [IS_RUNNING_TEXT]
    assert record[0].filename == __file__  # it points at the step that read it
