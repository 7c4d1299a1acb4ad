"""Workflows of the CLI and Flower tests, importable by workers, the CLI and tests alike.

Workers load this module through ``STALKFLOW_WORKFLOWS=tests.cli.cli_flows``; the
``stalkflow`` command imports it from ``tests.cli.cli_flows:<Name>``, so workflow and
event type names agree everywhere.
"""

from __future__ import annotations

import asyncio

from stalkflow import Context, Workflow, step
from stalkflow.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
)

# --- a small pipeline: fan out, progress on the stream, fan in --------------------------


class Chunk(Event):
    index: int
    text: str


class Counted(Event):
    index: int
    words: int


class Progress(Event):
    """Written to the stream by ``count``; declared in no step signature."""

    message: str


class Pipeline(Workflow):
    """Splits ``text`` into ``parts`` chunks, counts words in each, and sums them."""

    @step
    async def split(self, ctx: Context, ev: StartEvent) -> Chunk | None:
        text = str(ev.get("text", "a b c d e f"))
        parts = int(ev.get("parts", 2))
        words = text.split()
        await ctx.store.set("parts", parts)
        await ctx.store.set("label", ev.get("label", "pipeline"))
        size = max(1, -(-len(words) // parts))
        for index in range(parts):
            ctx.send_event(
                Chunk(index=index, text=" ".join(words[index * size : (index + 1) * size]))
            )
        return None

    @step(num_workers=4)
    async def count(self, ctx: Context, ev: Chunk) -> Counted:
        ctx.write_event_to_stream(Progress(message=f"counting chunk {ev.index}"))
        return Counted(index=ev.index, words=len(ev.text.split()))

    @step
    async def total(self, ctx: Context, ev: Counted) -> StopEvent | None:
        parts = await ctx.store.get("parts")
        done = ctx.collect_events(ev, [Counted] * parts)
        if done is None:
            return None
        words = sum(item.words for item in done)  # type: ignore[attr-defined]
        await ctx.store.set("words", words)
        return StopEvent(result={"words": words, "label": await ctx.store.get("label")})


# --- human in the loop, with wait_for_event ----------------------------------------------


class Approval(Workflow):
    """Asks for approval with ``wait_for_event``; the step re-runs once answered."""

    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.store.set("asked", True)
        answer = await ctx.wait_for_event(
            HumanResponseEvent,
            waiter_event=InputRequiredEvent(prefix=f"Approve {ev.get('item', 'it')}?"),
            timeout=60,
        )
        return StopEvent(result=f"{ev.get('item', 'it')}: {answer.response}")


# --- a run that goes on until cancelled -----------------------------------------------


class Tick(Event):
    n: int


class Ticker(Workflow):
    """Ticks every ``interval`` seconds, ``ticks`` times (long enough to be cancelled)."""

    @step
    async def start(self, ctx: Context, ev: StartEvent) -> Tick:
        await ctx.store.set("ticks", int(ev.get("ticks", 600)))
        return Tick(n=0)

    @step
    async def tick(self, ctx: Context, ev: Tick) -> Tick | StopEvent:
        await asyncio.sleep(0.1)
        if ev.n + 1 >= await ctx.store.get("ticks"):
            return StopEvent(result=ev.n + 1)
        return Tick(n=ev.n + 1)


# --- a step that fails ---------------------------------------------------------------


class Broken(Workflow):
    """Its one step raises ``ValueError``."""

    @step
    async def explode(self, ev: StartEvent) -> StopEvent:
        raise ValueError(f"cannot handle {ev.get('what', 'this')}")


pipeline = Pipeline(timeout=30)
approval = Approval(timeout=60)
ticker = Ticker(timeout=120)
broken = Broken(timeout=30)
