"""LlamaIndex instrumentation: spans, events and tags, seen by real root-dispatcher handlers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from llama_index_instrumentation import get_dispatcher
from llama_index_instrumentation.dispatcher import active_instrument_tags, instrument_tags
from tests.fixtures.instrumentation import Handlers, recording

from stalkflow import Context, Workflow, step
from stalkflow.errors import WorkflowCancelledByUser
from stalkflow.events import Event, StartEvent, StopEvent
from stalkflow.observability import (
    SpanCancelledEvent,
    WorkflowRunOutputEvent,
    WorkflowStepOutputEvent,
)


@pytest.fixture
def handlers() -> Iterator[Handlers]:
    """A span and an event handler on the root dispatcher, removed after the test."""
    with recording() as attached:
        yield attached


class Mid(Event):
    text: str


seen_tags: list[dict[str, Any]] = []


class Two(Workflow):
    @step
    async def first(self, ev: StartEvent) -> Mid:
        seen_tags.append(dict(active_instrument_tags.get()))
        return Mid(text="hi")

    @step
    def second(self, ev: Mid) -> StopEvent:  # a sync step, in a thread
        seen_tags.append(dict(active_instrument_tags.get()))
        return StopEvent(result="done")


class Boom(Workflow):
    @step
    async def explode(self, ev: StartEvent) -> StopEvent:
        raise ValueError("boom")


class Slow(Workflow):
    @step
    async def wait(self, ev: StartEvent) -> StopEvent:
        await asyncio.sleep(5)
        return StopEvent()


async def test_run_span_parents_a_span_per_step(handlers: Handlers) -> None:
    handler = Two(timeout=10).run(topic="t")
    assert await handler == "done"
    run, first, second = (handlers.spans.named(n) for n in ("Two.run", "Two.first", "Two.second"))
    assert [s.name for s in handlers.spans.spans] == ["Two.run", "Two.first", "Two.second"]
    assert run.parent is None
    assert first.parent == run.id and second.parent == run.id
    assert (run.end, first.end, second.end) == ("exit", "exit", "exit")
    assert isinstance(run.result, StopEvent) and run.result.result == "done"
    assert first.result == Mid(text="hi")
    assert first.tags["llamaindex.run_id"] == handler.run_id
    assert second.tags["llamaindex.step.input_summary"] == "Mid(text='hi')"


async def test_output_events_carry_summaries_spans_and_tags(handlers: Handlers) -> None:
    handler = Two(timeout=10).run()
    await handler
    step_outputs = handlers.events.of(WorkflowStepOutputEvent)
    assert [e.output for e in step_outputs] == ["Mid(text='hi')", "StopEvent(result='done')"]
    assert step_outputs[0].span_id == handlers.spans.named("Two.first").id
    assert step_outputs[0].tags["llamaindex.step.input_event"] == "StartEvent"
    (run_output,) = handlers.events.of(WorkflowRunOutputEvent)
    assert run_output.output == "StopEvent(result='done')"
    assert run_output.span_id == handlers.spans.named("Two.run").id
    assert run_output.tags["llamaindex.run_id"] == handler.run_id
    assert run_output.class_name() == "workflow.output"
    assert step_outputs[0].class_name() == "step.output"


async def test_caller_span_and_tags_reach_the_steps(handlers: Handlers) -> None:
    seen_tags.clear()
    outer = get_dispatcher("tests.caller")

    @outer.span
    async def caller() -> Any:
        with instrument_tags({"tenant": "acme"}):
            handler = Two(timeout=10).run()
        return handler.run_id, await handler

    run_id, result = await caller()
    assert result == "done"
    (outer_span,) = [s for s in handlers.spans.spans if s.name.endswith("<locals>.caller")]
    assert handlers.spans.named("Two.run").parent == outer_span.id
    expected = {
        "tenant": "acme",
        "llamaindex.run_id": run_id,
        "llamaindex.step.input_event": "StartEvent",
        "llamaindex.step.input_summary": "StartEvent()",
    }
    assert seen_tags[0] == expected
    assert seen_tags[1]["llamaindex.step.input_event"] == "Mid"  # the sync step too


async def test_tags_are_set_without_handlers() -> None:
    seen_tags.clear()
    handler = Two(timeout=10).run()
    await handler
    assert seen_tags[0]["llamaindex.run_id"] == handler.run_id
    assert seen_tags[0]["llamaindex.step.input_summary"] == "StartEvent()"
    assert active_instrument_tags.get() == {}


async def test_a_failing_step_drops_its_span_and_the_run_span(handlers: Handlers) -> None:
    with pytest.raises(ValueError, match="boom"):
        await Boom(timeout=10).run()
    run, explode = handlers.spans.named("Boom.run"), handlers.spans.named("Boom.explode")
    assert explode.end == "drop" and isinstance(explode.error, ValueError)
    assert run.end == "drop" and isinstance(run.error, ValueError)
    assert handlers.events.of(WorkflowRunOutputEvent) == []


async def test_cancelling_exits_spans_after_a_cancelled_event(handlers: Handlers) -> None:
    handler = Slow(timeout=None).run()
    await asyncio.sleep(0.1)
    await handler.cancel_run()
    with pytest.raises(WorkflowCancelledByUser):
        await handler
    for _ in range(50):  # the step's task is cancelled after the run ends
        if handlers.spans.named("Slow.wait").end != "open":
            break
        await asyncio.sleep(0.01)
    assert handlers.spans.named("Slow.run").end == "exit"
    assert handlers.spans.named("Slow.wait").end == "exit"
    reasons = sorted(e.reason for e in handlers.events.of(SpanCancelledEvent))
    assert reasons == ["step cancelled", "workflow cancelled by user"]


async def test_waiting_step_span_ends_cleanly(handlers: Handlers) -> None:
    class Answer(Event):
        text: str

    class Asks(Workflow):
        @step
        async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
            answer = await ctx.wait_for_event(Answer)
            return StopEvent(result=answer.text)

    handler = Asks(timeout=5).run()
    await asyncio.sleep(0.05)
    await handler.send_event(Answer(text="yes"))
    assert await handler == "yes"
    asks = [s for s in handlers.spans.spans if s.name.endswith("Asks.ask")]
    assert [s.end for s in asks] == ["exit", "exit"]
    assert asks[0].result is None
