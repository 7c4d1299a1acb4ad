"""``Workflow(verbose=True)``: the lines written, their order, and where they go."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from stalkflow import Context, Workflow, step
from stalkflow.errors import WorkflowCancelledByUser, WorkflowTimeoutError
from stalkflow.events import Event, HumanResponseEvent, StartEvent, StopEvent
from stalkflow.events.summary import summarize_event
from stalkflow.observability import verbose


class Topic(StartEvent):
    topic: str


class Mid(Event):
    text: str


class Side(Event):
    pass


class TwoSteps(Workflow):
    @step
    async def first(self, ev: Topic) -> Mid:
        return Mid(text="hi")

    @step
    async def second(self, ev: Mid) -> StopEvent:
        return StopEvent(result="done")


class Sends(Workflow):
    @step
    async def first(self, ctx: Context, ev: StartEvent) -> Mid | Side | None:
        ctx.send_event(Side(), step="side")
        return Mid(text="m")

    @step
    async def side(self, ev: Side) -> None:
        return None

    @step
    async def second(self, ev: Mid) -> StopEvent:
        return StopEvent(result="ok")


class Slow(Workflow):
    @step
    async def wait(self, ev: StartEvent) -> StopEvent:
        await asyncio.sleep(5)
        return StopEvent()


class Asks(Workflow):
    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        answer = await ctx.wait_for_event(HumanResponseEvent)
        return StopEvent(result=answer.response)


TWO_STEPS = [
    "[tick] add: Topic(topic='x')",
    "[first:0] started from Topic",
    "[first:0] complete with Mid",
    "[tick] add: Mid(text='hi')",
    "[second:0] started from Mid",
    "[result] StopEvent(result='done')",
    "[second:0] complete with StopEvent",
]


@pytest.fixture
def no_verbose_logging() -> Iterator[None]:
    """Neither verbose logger configured, whatever the session did (the print path)."""
    saved = {}
    for name in ("stalkflow.verbose", "workflows.verbose", "workflows"):
        found = logging.getLogger(name)
        saved[name] = (found.level, list(found.handlers))
        found.setLevel(logging.NOTSET)
        found.handlers.clear()
    try:
        yield
    finally:
        for name, (level, handlers) in saved.items():
            logging.getLogger(name).setLevel(level)
            logging.getLogger(name).handlers[:] = handlers


def lines_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("[")]


async def test_prints_upstream_lines_in_order(
    capsys: pytest.CaptureFixture[str], no_verbose_logging: None
) -> None:
    assert await TwoSteps(verbose=True).run(topic="x") == "done"
    assert lines_of(capsys.readouterr().out) == TWO_STEPS


async def test_quiet_without_verbose(
    capsys: pytest.CaptureFixture[str], no_verbose_logging: None
) -> None:
    await TwoSteps().run(topic="x")
    assert capsys.readouterr().out == ""


async def test_sent_events_show_their_target_step(
    capsys: pytest.CaptureFixture[str], no_verbose_logging: None
) -> None:
    await Sends(verbose=True).run()
    lines = lines_of(capsys.readouterr().out)
    end_of_first = lines.index("[first:0] complete with Mid")
    assert lines[end_of_first + 1 : end_of_first + 3] == [
        "[tick] add: Side() -> side",
        "[tick] add: Mid(text='m')",
    ]
    assert "[side:0] complete with no result" in lines


async def test_timeout_and_cancel_lines(
    capsys: pytest.CaptureFixture[str], no_verbose_logging: None
) -> None:
    with pytest.raises(WorkflowTimeoutError):
        await Slow(verbose=True, timeout=0.2).run()
    assert lines_of(capsys.readouterr().out)[-1] == "[tick] timeout: 0.2s"

    handler = Slow(verbose=True, timeout=None).run()
    await asyncio.sleep(0.1)
    await handler.cancel_run()
    with pytest.raises(WorkflowCancelledByUser):
        await handler
    assert lines_of(capsys.readouterr().out)[-1] == "[tick] cancelled"


async def test_event_sent_from_outside_is_an_add(
    capsys: pytest.CaptureFixture[str], no_verbose_logging: None
) -> None:
    handler = Asks(verbose=True, timeout=5).run()
    await asyncio.sleep(0.05)
    await handler.send_event(HumanResponseEvent(response="yes"))
    assert await handler == "yes"
    assert lines_of(capsys.readouterr().out) == [
        "[tick] add: StartEvent()",
        "[ask:0] started from StartEvent",
        "[ask:0] complete with no result",
        "[tick] add: HumanResponseEvent(response='yes')",
        "[ask:0] started from StartEvent",
        "[result] StopEvent(result='yes')",
        "[ask:0] complete with StopEvent",
    ]


@pytest.mark.parametrize(
    ("logger_name", "level"),
    [
        ("stalkflow.verbose", logging.DEBUG),
        ("stalkflow.verbose", logging.INFO),
        ("workflows.verbose", logging.INFO),  # configured for llama-index-workflows
    ],
)
async def test_lines_go_to_an_enabled_logger(
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    no_verbose_logging: None,
    logger_name: str,
    level: int,
) -> None:
    caplog.set_level(level, logger=logger_name)
    await TwoSteps(verbose=True).run(topic="x")
    assert capsys.readouterr().out == ""
    records = [r for r in caplog.records if r.name == logger_name]
    assert [r.getMessage() for r in records] == TWO_STEPS
    assert {r.levelno for r in records} == {level}


def test_output_prefers_a_configured_upstream_logger(no_verbose_logging: None) -> None:
    assert verbose.output() is print
    logging.getLogger("workflows").setLevel(logging.DEBUG)
    assert verbose.output() == logging.getLogger("workflows.verbose").debug
    logging.getLogger("stalkflow.verbose").setLevel(logging.INFO)
    # an upstream configuration wins over stalkflow's own logger
    assert verbose.output() == logging.getLogger("workflows.verbose").debug


def test_enqueued_lines_follow_their_event() -> None:
    from stalkflow.core.deliveries import Delivery
    from stalkflow.events import StepState, StepStateChanged

    mid = Mid(text="m")
    waits = Delivery("r", "w", "second", mid, "d-wait")
    runs = Delivery("r", "w", "other", mid, "d-run")
    done = StepStateChanged(
        name="first",
        step_state=StepState.NOT_RUNNING,
        worker_id="3",
        input_event_name="<class 'x.StartEvent'>",
        output_event_name="<class 'tests.unit.test_verbose.Mid'>",
    )
    assert verbose.committed([], mid, [done], [waits, runs], [runs]) == [
        "[first:3] complete with Mid",
        "[tick] add: Mid(text='m')",
        "[second] enqueued (waiting for capacity)",
    ]


class Wide(Event):
    text: str
    numbers: list[int]
    table: dict[str, int]


def test_summary_cuts_long_values() -> None:
    event = Wide(text="a" * 60, numbers=[1, 2, 3, 4], table={"a": 1}, extra="e")
    assert summarize_event(event) == (
        f"Wide(text='{'a' * 50}...', numbers=[4 items], table={{'a': 1}}, extra='e')"
    )
    assert summarize_event(StopEvent(result={"a": 1, "b": 2, "c": 3, "d": 4})) == (
        "StopEvent(result={4 keys})"
    )
    long = summarize_event(
        Wide(text="t", numbers=[], table={}, **{f"k{i}": "v" * 40 for i in range(9)})
    )
    assert len(long) == 200 and long.endswith("...")
