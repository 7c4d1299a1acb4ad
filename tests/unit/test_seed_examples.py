"""The "Managing State" examples in examples/ run on stalkflow as users run them.

The scripts reproduce the code of two versions of llama-index-workflows'
"Managing State" page (seeds 000 and 003), with ``workflows`` imports changed
to ``stalkflow`` and nothing else, plus ``examples/quickstart.py``.

Each script is run as a user runs it (``python examples/<name>.py`` from the
repository root, in a subprocess, with no engine configured) and its output
checked line for line. When llama-index-workflows is installed, each script is
also run on it with the imports changed back, and the two outputs must match.
Then each example's workflow class is imported and checked directly, state
included.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import ValidationError

from stalkflow import Context, Workflow, step
from stalkflow.context.serializers import PickleSerializer
from stalkflow.events import (
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

# What each seed example prints, exactly.
EXPECTED_OUTPUT = {
    "state_counter.py": "count after one run: 1\n",
    "state_edit_state.py": "count after one locked update: 1\n",
    "typed_state.py": "result: 'Done!', state: CounterState(count=1)\n",
    "typed_state_fields.py": "typed count after one run: 1\n",
    "state_counter_no_result.py": "result: None, count in state: 1\n",
    "state_edit_state_no_result.py": "result: None, count in state: 1\n",
    "typed_state_ctx_state.py": "result: 'Done!', state: CounterState(count=1)\n",
    "context_across_runs.py": ("first run: count = 1\nsecond run, same context: count = 2\n"),
    "context_across_runs_to_dict.py": (
        "first run: count = 1\n"
        "restored context: count = 1\n"
        "second run, restored context: count = 2\n"
    ),
}
ALL_SCRIPTS = [*EXPECTED_OUTPUT, "quickstart.py"]

PROGRESS_MESSAGE = re.compile(
    r"paragraph (?P<paragraph>\d+): (?P<words>\d+) words \((?P<done>\d+)/6 done\)"
)
STREAMED_LINE = re.compile("streamed: " + PROGRESS_MESSAGE.pattern)
QUICKSTART_LINE = re.compile(
    r"(?P<peak>\d+) paragraphs were counted at once at most \(num_workers=3\); "
    r"the run took (?P<seconds>\d+\.\d\d) s"
)


# --- helpers ----------------------------------------------------------------------


def user_env() -> dict[str, str]:
    """The environment of a user with nothing configured: the embedded engine."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STALKFLOW_")}


def run_script(path: Path) -> str:
    """Run ``python <path>`` from the repository root; it must succeed silently on stderr."""
    proc = subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=user_env(),
        check=False,
    )
    assert proc.returncode == 0, f"{path.name} failed:\n{proc.stderr}"
    assert proc.stderr == "", f"{path.name} wrote to stderr:\n{proc.stderr}"
    return proc.stdout


_loaded: dict[str, ModuleType] = {}


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module (once per test session)."""
    if name not in _loaded:
        module_name = f"stalkflow_example_{name}"
        spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        _loaded[name] = module
    return _loaded[name]


def expected_word_counts(text: str) -> list[int]:
    return [len(p.split()) for p in text.split("\n\n") if p.strip()]


# --- the scripts, run as a user runs them ----------------------------------------------


def test_every_seed_example_has_a_script() -> None:
    missing = [name for name in ALL_SCRIPTS if not (EXAMPLES / name).is_file()]
    assert missing == []


@pytest.mark.parametrize("script", sorted(EXPECTED_OUTPUT))
def test_seed_example_script_prints_its_result(script: str) -> None:
    assert run_script(EXAMPLES / script) == EXPECTED_OUTPUT[script]


def test_quickstart_script_runs_fast_and_reports_the_run() -> None:
    started = time.perf_counter()
    out = run_script(EXAMPLES / "quickstart.py")
    elapsed = time.perf_counter() - started

    assert elapsed < 2.0, f"python examples/quickstart.py took {elapsed:.2f} s"
    words = expected_word_counts(load_example("quickstart").DOCUMENT)
    lines = out.splitlines()
    assert len(lines) == 9, out
    # Each paragraph is streamed once, with a counter that edit_state() increments atomically.
    streamed = [STREAMED_LINE.fullmatch(line) for line in lines[:6]]
    assert all(streamed), out
    assert sorted(int(m["paragraph"]) for m in streamed if m) == [1, 2, 3, 4, 5, 6]
    assert sorted(int(m["done"]) for m in streamed if m) == [1, 2, 3, 4, 5, 6]
    assert {int(m["paragraph"]): int(m["words"]) for m in streamed if m} == {
        i + 1: n for i, n in enumerate(words)
    }
    assert lines[6] == f"result: {sum(words)} words in 6 paragraphs {words}"
    last = QUICKSTART_LINE.fullmatch(lines[8])
    assert last is not None, lines[8]
    peak = int(last["peak"])
    assert 2 <= peak <= 3
    assert lines[7] == (
        f"state: Stats(paragraphs=6, counted=6, words={sum(words)}, in_flight=0, "
        f"peak_in_flight={peak})"
    )
    assert float(last["seconds"]) < 1.0


def to_upstream(source: str) -> str:
    """The script as the documentation wrote it: ``stalkflow`` imports back to ``workflows``."""
    return re.sub(r"^(\s*)from stalkflow(?=[.\s])", r"\1from workflows", source, flags=re.M)


@pytest.mark.parametrize("script", ALL_SCRIPTS)
def test_script_prints_the_same_as_on_llama_index_workflows(script: str, tmp_path: Path) -> None:
    pytest.importorskip("workflows", reason="llama-index-workflows is not installed")
    source = (EXAMPLES / script).read_text()
    upstream = to_upstream(source)
    changed = [
        (a, b) for a, b in zip(source.splitlines(), upstream.splitlines(), strict=True) if a != b
    ]
    assert changed, "the script imports nothing from stalkflow"
    assert all(a.lstrip().startswith("from stalkflow") for a, _ in changed)
    assert not re.search(r"^\s*(from|import) stalkflow\b", upstream, flags=re.M)
    copy = tmp_path / script
    copy.write_text(upstream)

    ours, theirs = run_script(EXAMPLES / script), run_script(copy)

    def timeless(out: str) -> str:
        return re.sub(r"took \d+\.\d\d s", "took <t> s", out)

    assert timeless(ours) == timeless(theirs)


# --- the seed examples' workflows, checked directly --------------------------------------


async def test_state_counter_returns_the_count_kept_in_untyped_state() -> None:
    example = load_example("state_counter")
    workflow = example.MyWorkflow()

    handler = workflow.run()
    assert await handler == 1
    assert await handler.ctx.store.get("count") == 1
    # A run without a context gets a fresh one: the count starts again.
    assert await workflow.run() == 1


@pytest.mark.parametrize("name", ["state_counter_no_result", "state_edit_state_no_result"])
async def test_earlier_counters_keep_the_count_in_state_and_return_none(name: str) -> None:
    workflow = load_example(name).MyWorkflow()
    ctx = Context(workflow)

    handler = workflow.run(ctx=ctx)
    assert await handler is None
    assert isinstance(handler.get_stop_event(), StopEvent)
    assert await ctx.store.get("count") == 1
    assert await workflow.run(ctx=ctx) is None
    assert await ctx.store.get("count") == 2


async def test_state_edit_state_increments_under_the_lock_across_runs() -> None:
    workflow = load_example("state_edit_state").MyWorkflow()
    ctx = Context(workflow)

    assert await workflow.run(ctx=ctx) == 1
    assert await workflow.run(ctx=ctx) == 2
    assert await ctx.store.get("count") == 2
    assert await ctx.store.get("missing", default=None) is None


@pytest.mark.parametrize("name", ["typed_state", "typed_state_ctx_state"])
async def test_typed_state_is_a_counter_state_with_count_incremented(name: str) -> None:
    example = load_example(name)
    workflow = example.MyWorkflow()

    handler = workflow.run()
    assert await handler == "Done!"
    state = await handler.ctx.store.get_state()
    assert type(state) is example.CounterState
    assert state == example.CounterState(count=1)
    assert await handler.ctx.store.get("count") == 1


@pytest.mark.parametrize("name", ["typed_state", "typed_state_ctx_state"])
async def test_typed_state_is_kept_across_runs_and_through_to_dict(name: str) -> None:
    # "Maintaining Context Across Runs" follows the typed MyWorkflow on both pages.
    example = load_example(name)
    workflow = example.MyWorkflow()
    ctx = Context(workflow)

    assert await workflow.run(ctx=ctx) == "Done!"
    assert await workflow.run(ctx=ctx) == "Done!"
    assert await ctx.store.get_state() == example.CounterState(count=2)

    ctx_dict = json.loads(json.dumps(ctx.to_dict()))
    restored = Context.from_dict(workflow, ctx_dict)
    assert await restored.store.get_state() == example.CounterState(count=2)
    assert await workflow.run(ctx=restored) == "Done!"
    state = await restored.store.get_state()
    assert type(state) is example.CounterState
    assert state.count == 3
    # The saved dict is a copy: the original context did not move on.
    assert await ctx.store.get_state() == example.CounterState(count=2)


async def test_typed_state_fields_get_set_and_get_state() -> None:
    example = load_example("typed_state_fields")
    workflow = example.MyWorkflow()
    ctx = Context(workflow)

    handler = workflow.run(ctx=ctx)
    result = await handler
    assert result == 1
    assert type(result) is int
    state = await ctx.store.get_state()
    assert type(state) is example.CounterState
    assert state == example.CounterState(count=1)
    assert await workflow.run(ctx=ctx) == 2
    assert await ctx.store.get("count") == 2


async def test_typed_state_is_validated() -> None:
    # "Get automatic validation of your state": stalkflow validates every change
    # to a typed state (upstream validates only with validate_assignment).
    example = load_example("typed_state_fields")
    workflow = example.MyWorkflow()
    ctx = Context(workflow)

    with pytest.raises(ValidationError):
        await ctx.store.set("count", "not a number")
    assert await ctx.store.get_state() == example.CounterState(count=0)
    assert await workflow.run(ctx=ctx) == 1


async def test_context_across_runs_carries_the_count() -> None:
    example = load_example("context_across_runs")
    workflow = example.MyWorkflow()
    ctx = Context(workflow)

    handler = workflow.run(ctx=ctx)
    result = await handler
    assert result == 1
    first_run = handler.run_id

    handler = workflow.run(ctx=ctx)
    result = await handler
    assert result == 2
    assert handler.run_id != first_run
    assert await ctx.store.get("count") == 2
    # State belongs to the context, not to the workflow.
    assert await workflow.run(ctx=Context(workflow)) == 1


async def test_context_across_runs_through_to_dict_and_from_dict() -> None:
    example = load_example("context_across_runs_to_dict")
    workflow = example.MyWorkflow()
    ctx = Context(workflow)
    assert await workflow.run(ctx=ctx) == 1

    ctx_dict = ctx.to_dict()
    assert json.loads(json.dumps(ctx_dict)) == ctx_dict  # "save the ctx somewhere"
    assert ctx_dict["is_running"] is False
    restored = Context.from_dict(workflow, json.loads(json.dumps(ctx_dict)))
    assert await restored.store.get("count") == 1

    assert await workflow.run(ctx=restored) == 2
    assert await restored.store.get("count") == 2
    # The original context is independent of its saved copy.
    assert await ctx.store.get("count") == 1
    assert await workflow.run(ctx=ctx) == 2


class AskWorkflow(Workflow):
    """A run that stops mid-way for human input, to snapshot it while it is running."""

    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> InputRequiredEvent:
        current_count = await ctx.store.get("count", default=0)
        await ctx.store.set("count", current_count + 1)
        return InputRequiredEvent(prefix="name? ")

    @step
    async def answer(self, ctx: Context, ev: HumanResponseEvent) -> StopEvent:
        return StopEvent(result=(ev.response, await ctx.store.get("count")))


async def test_running_context_resumes_without_a_new_start_event() -> None:
    # "If the context is still running, run(ctx=ctx) resumes that run and does
    # not send a new StartEvent."
    workflow = AskWorkflow(timeout=10)
    handler = workflow.run()
    async for event in handler.stream_events():
        if isinstance(event, InputRequiredEvent):
            break
    ctx_dict = json.loads(json.dumps(handler.ctx.to_dict()))
    await handler.cancel_run()
    assert ctx_dict["is_running"] is True

    ctx = Context.from_dict(workflow, ctx_dict)
    resumed = workflow.run(ctx=ctx)
    resumed.ctx.send_event(HumanResponseEvent(response="Ada"))
    assert await resumed == ("Ada", 1)  # `ask` did not run again


class Tally:
    """A custom value that JSON cannot encode."""

    def __init__(self) -> None:
        self.n = 0


class TallyWorkflow(Workflow):
    @step
    async def count(self, ctx: Context, ev: StartEvent) -> StopEvent:
        tally = await ctx.store.get("tally", default=None) or Tally()
        tally.n += 1
        await ctx.store.set("tally", tally)
        return StopEvent(result=tally.n)


async def test_custom_values_with_a_custom_serializer() -> None:
    # "For custom values, either make them Pydantic-serializable or provide a
    # custom serializer when calling Context.to_dict() and Context.from_dict()."
    # stalkflow checks every value when it is set, so the serializer is given to
    # the Context too; the run's steps must encode the state with it.
    workflow = TallyWorkflow()
    ctx = Context(workflow, serializer=PickleSerializer())
    assert await workflow.run(ctx=ctx) == 1

    ctx_dict = ctx.to_dict(serializer=PickleSerializer())
    restored = Context.from_dict(workflow, ctx_dict, serializer=PickleSerializer())
    assert (await restored.store.get("tally")).n == 1
    assert await workflow.run(ctx=restored) == 2


# --- the quickstart, checked directly ------------------------------------------------------


async def run_quickstart(text: str) -> tuple[Any, Any, list[Any]]:
    quickstart = load_example("quickstart")
    handler = quickstart.WordCount(timeout=10).run(text=text)
    streamed = [event async for event in handler.stream_events()]
    result = await handler
    state = await handler.ctx.store.get_state()
    return result, state, streamed


async def test_quickstart_fans_out_and_collects_every_paragraph() -> None:
    quickstart = load_example("quickstart")
    words = expected_word_counts(quickstart.DOCUMENT)
    assert len(words) == 6

    result, state, streamed = await run_quickstart(quickstart.DOCUMENT)

    assert result == {"paragraphs": 6, "words": sum(words), "per_paragraph": words}
    assert type(state) is quickstart.Stats
    assert (state.paragraphs, state.counted, state.words, state.in_flight) == (
        6,
        6,
        sum(words),
        0,
    )
    # num_workers=3 caps the parallel executions; more than one did run at once.
    assert 2 <= state.peak_in_flight <= 3

    progress = [event for event in streamed if isinstance(event, quickstart.Progress)]
    assert len(progress) == 6
    # edit_state() made every increment atomic: each count from 1 to 6 appears once.
    matches = [PROGRESS_MESSAGE.fullmatch(event.message) for event in progress]
    assert all(matches), [event.message for event in progress]
    assert sorted(int(m["done"]) for m in matches if m) == [1, 2, 3, 4, 5, 6]
    assert {int(m["paragraph"]): int(m["words"]) for m in matches if m} == {
        i + 1: n for i, n in enumerate(words)
    }
    assert isinstance(streamed[-1], StopEvent)


@pytest.mark.parametrize("paragraphs", [1, 2, 10])
async def test_quickstart_collects_as_many_results_as_it_sent(paragraphs: int) -> None:
    text = "\n\n".join(" ".join(["word"] * (i + 1)) for i in range(paragraphs))

    result, state, _ = await run_quickstart(text)

    per_paragraph = list(range(1, paragraphs + 1))
    assert result == {
        "paragraphs": paragraphs,
        "words": sum(per_paragraph),
        "per_paragraph": per_paragraph,
    }
    assert state.counted == paragraphs
    assert state.in_flight == 0
    assert 1 <= state.peak_in_flight <= min(3, paragraphs)
