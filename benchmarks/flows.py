"""The benchmark workflows, written once against the llama-index-workflows API.

This module imports ``stalkflow``; :func:`upstream_flows` builds the very same
source with ``stalkflow`` replaced by ``workflows`` in its imports (and nothing
else), which is the migration the README promises. Workers load this module
through ``STALKFLOW_WORKFLOWS=benchmarks.flows``; every class here is
instantiable with no arguments, so the worker registers them all.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from stalkflow import Context, Workflow, step
from stalkflow.events import Event, StartEvent, StopEvent

# --- 1. step hop: one step re-emits an event to itself ------------------------------


class HopStart(StartEvent):
    hops: int = 2000


class Hop(Event):
    left: int


class HopFlow(Workflow):
    """``hops`` executions of one step, each returning the event of the next."""

    @step
    async def hop(self, ev: HopStart | Hop) -> Hop | StopEvent:
        left = ev.hops if isinstance(ev, HopStart) else ev.left
        if left <= 0:
            return StopEvent(result="done")
        return Hop(left=left - 1)


# --- 3./4. fan-out and fan-in -------------------------------------------------------


class FanStart(StartEvent):
    count: int = 1000
    sleep_s: float = 0.0


class Item(Event):
    index: int
    count: int
    sleep_s: float


class Done(Event):
    index: int
    count: int


async def _work(ev: Item) -> Done:
    if ev.sleep_s > 0:
        await asyncio.sleep(ev.sleep_s)
    return Done(index=ev.index, count=ev.count)


def _gather(ctx: Context, ev: Done) -> StopEvent | None:
    done = ctx.collect_events(ev, [Done] * ev.count)
    if done is None:
        return None
    return StopEvent(result=len(done))


class FanOutFlow(Workflow):
    """``fan`` sends ``count`` items; ``work`` (64 at a time) answers each; ``gather``
    collects all of them with ``collect_events``."""

    @step
    async def fan(self, ctx: Context, ev: FanStart) -> Item | None:
        for index in range(ev.count):
            ctx.send_event(Item(index=index, count=ev.count, sleep_s=ev.sleep_s))
        return None

    @step(num_workers=64)
    async def work(self, ev: Item) -> Done:
        return await _work(ev)

    @step
    async def gather(self, ctx: Context, ev: Done) -> StopEvent | None:
        return _gather(ctx, ev)


class IOFanOutFlow(Workflow):
    """The same fan-out, 100 handlers at a time (each awaits ``sleep_s``)."""

    @step
    async def fan(self, ctx: Context, ev: FanStart) -> Item | None:
        for index in range(ev.count):
            ctx.send_event(Item(index=index, count=ev.count, sleep_s=ev.sleep_s))
        return None

    @step(num_workers=100)
    async def work(self, ev: Item) -> Done:
        return await _work(ev)

    @step
    async def gather(self, ctx: Context, ev: Done) -> StopEvent | None:
        return _gather(ctx, ev)


# --- 5. state contention ------------------------------------------------------------


class CountStart(StartEvent):
    editors: int = 8
    increments: int = 250


class Edit(Event):
    increments: int
    editors: int


class Edited(Event):
    editors: int


class CounterFlow(Workflow):
    """``editors`` concurrent steps, each doing ``increments`` ``edit_state()`` increments."""

    @step
    async def start(self, ctx: Context, ev: CountStart) -> Edit | None:
        for _ in range(ev.editors):
            ctx.send_event(Edit(increments=ev.increments, editors=ev.editors))
        return None

    @step(num_workers=8)
    async def edit(self, ctx: Context, ev: Edit) -> Edited:
        for _ in range(ev.increments):
            async with ctx.store.edit_state() as state:
                state["count"] = state.get("count", 0) + 1
        return Edited(editors=ev.editors)

    @step
    async def total(self, ctx: Context, ev: Edited) -> StopEvent | None:
        if ctx.collect_events(ev, [Edited] * ev.editors) is None:
            return None
        return StopEvent(result=await ctx.store.get("count"))


# --- 6. footprint: runs parked on wait_for_event -----------------------------------


class Answer(Event):
    value: int


class WaitStart(StartEvent):
    timeout_s: float | None = 2000.0


class WaitFlow(Workflow):
    """One step that waits for an ``Answer`` (the default 2000 s waiter timeout)."""

    @step
    async def ask(self, ctx: Context, ev: WaitStart) -> StopEvent:
        answer = await ctx.wait_for_event(Answer, timeout=ev.timeout_s)
        return StopEvent(result=answer.value)


# --- the same code on llama-index-workflows ------------------------------------------

UPSTREAM_MODULE = "benchmarks.flows_upstream"


def upstream_flows() -> ModuleType:
    """This module's source, with ``stalkflow`` imports changed to ``workflows``."""
    if UPSTREAM_MODULE in sys.modules:
        return sys.modules[UPSTREAM_MODULE]
    source = Path(__file__).read_text(encoding="utf-8")
    source = source.replace("from stalkflow import ", "from workflows import ")
    source = source.replace("from stalkflow.events import ", "from workflows.events import ")
    spec = importlib.util.spec_from_loader(UPSTREAM_MODULE, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__file__ = f"<{UPSTREAM_MODULE}>"
    sys.modules[UPSTREAM_MODULE] = module
    try:
        exec(compile(source, module.__file__, "exec"), module.__dict__)
    except BaseException:
        del sys.modules[UPSTREAM_MODULE]
        raise
    return module
