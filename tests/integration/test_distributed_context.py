"""``Context`` across runs on Celery + Redis behaves as in the embedded engine.

``run(ctx=ctx)`` of a completed context, ``to_dict()``/``from_dict()`` between
runs (untyped and typed state), a mid-run snapshot resumed without a new
StartEvent, and a run answered by a process that never registered its workflow.
The runs execute on the session's worker processes (see ``conftest.py``).
"""

from __future__ import annotations

import json
import os
import textwrap

import pytest
from tests.fixtures import context_workflows as flows
from tests.fixtures import distributed_workflows
from tests.integration._cluster import Cluster

from examples import context_across_runs
from stalkflow import Context, RunHandle, Workflow, get_run
from stalkflow.events import HumanResponseEvent, InputRequiredEvent
from stalkflow.handler import WorkflowHandler

pytestmark = [pytest.mark.redis, pytest.mark.celery]

RESULT_TIMEOUT_S = 30.0


def json_round_trip(data: dict[str, object]) -> dict[str, object]:
    """What saving a context "somewhere" (a database, a file) gives back."""
    return json.loads(json.dumps(data))  # type: ignore[no-any-return]


async def asked(handler: WorkflowHandler) -> InputRequiredEvent:
    """The first InputRequiredEvent the run streams."""
    async for event in handler.stream_events():
        if isinstance(event, InputRequiredEvent):
            return event
    raise AssertionError("the run ended without asking for input")


async def test_a_completed_context_starts_a_new_run_with_its_state(distributed: Cluster) -> None:
    workflow = context_across_runs.MyWorkflow()
    ctx = Context(workflow)

    first = workflow.run(ctx=ctx)
    assert await first == 1
    second = workflow.run(ctx=ctx)
    assert await second == 2

    assert second.run_id != first.run_id
    assert await ctx.store.get("count") == 2
    assert await workflow.run(ctx=Context(workflow)) == 1  # state belongs to the context


async def test_to_dict_from_dict_between_runs_keeps_the_state(distributed: Cluster) -> None:
    workflow = context_across_runs.MyWorkflow()
    ctx = Context(workflow)
    assert await workflow.run(ctx=ctx) == 1

    saved = json_round_trip(ctx.to_dict())
    assert saved["is_running"] is False
    restored = Context.from_dict(workflow, saved)
    assert await restored.store.get("count") == 1

    assert await workflow.run(ctx=restored) == 2
    assert await restored.store.get("count") == 2
    assert await ctx.store.get("count") == 1  # the saved copy moved on, not the original
    assert await workflow.run(ctx=ctx) == 2


async def test_typed_state_round_trips_between_runs(distributed: Cluster) -> None:
    workflow = flows.visitor
    ctx: Context[flows.Visits] = Context(workflow)
    assert await workflow.run(ctx=ctx) == 1
    assert await workflow.run(ctx=ctx) == 2

    restored: Context[flows.Visits] = Context.from_dict(workflow, json_round_trip(ctx.to_dict()))
    state = await restored.store.get_state()
    assert type(state) is flows.Visits
    assert state.visits == 2

    assert await workflow.run(ctx=restored) == 3
    state = await restored.store.get_state()
    assert type(state) is flows.Visits
    assert state.visits == 3
    assert len(state.pids) == 3
    assert os.getpid() not in state.pids  # the workers ran every step
    assert (await ctx.store.get_state()).visits == 2


async def test_a_mid_run_snapshot_resumes_without_a_new_start_event(distributed: Cluster) -> None:
    workflow = flows.interview
    handler = workflow.run(question="Your name?")
    assert (await asked(handler)).prefix == "Your name?"  # type: ignore[attr-defined]
    snapshot = json_round_trip(handler.ctx.to_dict())  # the waiter of `ask` is pending
    await handler.cancel_run()
    assert snapshot["is_running"] is True

    ctx = Context.from_dict(workflow, snapshot)
    resumed = workflow.run(ctx=ctx)
    # `ask` runs again (a waiting step re-runs from the top) and waits again ...
    assert (await asked(resumed)).prefix == "Your name?"  # type: ignore[attr-defined]
    resumed.ctx.send_event(HumanResponseEvent(response="ada"))
    result = await resumed

    assert result["answer"] == "ada"
    assert result["starts"] == 1  # ... but `start` did not: no new StartEvent
    assert result["pid"] != os.getpid()
    assert resumed.run_id != handler.run_id


async def test_an_answer_sent_before_the_step_waits_is_held_until_it_does(
    distributed: Cluster,
) -> None:
    handler = flows.interview.run(question="Your name?")
    # sent at once: `start` has not even run, nobody waits for a HumanResponseEvent yet
    handler.ctx.send_event(HumanResponseEvent(response="ada"))
    result = await handler

    assert result["answer"] == "ada"
    assert result["starts"] == 1
    assert result["pid"] != os.getpid()


@pytest.mark.parametrize(
    "workflow",
    [
        pytest.param(  # ctx.wait_for_event in a step
            flows.interview,
            id="waiter",
        ),
        pytest.param(distributed_workflows.greeting, id="step"),  # a step takes the answer
    ],
)
def test_a_process_that_never_registered_the_workflow_answers_a_run(
    distributed: Cluster, workflow: Workflow
) -> None:
    handle = workflow.submit()
    try:
        answer_from_a_stranger(distributed, handle)
    finally:
        handle.cancel()  # a no-op once the run completed


def answer_from_a_stranger(distributed: Cluster, handle: RunHandle) -> None:
    assert any(isinstance(event, InputRequiredEvent) for event in handle.events())

    # A later web request: it knows the run id and the answer's event class, no workflow.
    settings = distributed.settings
    out = distributed.python(
        textwrap.dedent(
            f"""
            import sys
            import stalkflow
            from stalkflow.events import HumanResponseEvent

            engine = stalkflow.configure(
                broker_url={settings.broker_url!r},
                redis_url={settings.redis_url!r},
                prefix={settings.prefix!r},
                queue={settings.queue!r},
            )
            stalkflow.get_run({handle.run_id!r}).send_event(HumanResponseEvent(response="grace"))
            print(engine.registry.names(), sorted(m for m in sys.modules if m.startswith("tests")))
            """
        )
    )

    assert out.strip() == "[] []"  # nothing registered, no workflow module imported
    result = handle.get(timeout=RESULT_TIMEOUT_S)
    answer = result.get("answer") or result.get("greeting")
    assert answer in ("grace", "hello grace")
    assert result["pid"] != os.getpid()
    assert get_run(handle.run_id).status == "completed"
