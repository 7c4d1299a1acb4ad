"""stalkflow quickstart: fan out, work in parallel, fan in; typed state; streamed progress.

A short document is split into paragraphs. Each paragraph is sent as its own
event (``ctx.send_event``) to a step that handles up to three at once
(``num_workers=3``), and the counts are gathered back into one summary
(``ctx.collect_events``). Shared counters live in a typed state, a pydantic
model updated atomically with ``ctx.store.edit_state()``, and each finished
paragraph is streamed to the caller (``handler.stream_events()``) as it happens.

Runs in this process, no infrastructure needed:

    python examples/quickstart.py
"""

import asyncio
import time

from pydantic import BaseModel

from stalkflow import Context, Workflow, step
from stalkflow.events import Event, StartEvent, StopEvent

DOCUMENT = """\
Workflows are event-driven: each step accepts an event and returns another one.

A step can also send several events at once, and they are handled in parallel.

Another step gathers the results back once every one of them has arrived.

Steps share a state that the context keeps for the whole run.

Callers watch the run through the events it streams.

Nothing else is needed: no broker, no database, no server.
"""


class Paragraph(Event):
    """One paragraph to count, sent by ``split``."""

    index: int
    text: str


class Counted(Event):
    """The word count of one paragraph, returned by ``count``."""

    index: int
    words: int


class Progress(Event):
    """A progress report, written to the run's stream."""

    message: str


class Stats(BaseModel):
    """The run's typed state; every field has a default, so it initializes itself."""

    paragraphs: int = 0
    counted: int = 0
    words: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0


class WordCount(Workflow):
    @step
    async def split(self, ctx: Context[Stats], ev: StartEvent) -> Paragraph | None:
        paragraphs = [p.strip() for p in ev.text.split("\n\n") if p.strip()]
        await ctx.store.set("paragraphs", len(paragraphs))
        for index, text in enumerate(paragraphs):
            ctx.send_event(Paragraph(index=index, text=text))  # fan out
        return None

    @step(num_workers=3)
    async def count(self, ctx: Context[Stats], ev: Paragraph) -> Counted:
        async with ctx.store.edit_state() as state:
            state.in_flight += 1
            state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
        await asyncio.sleep(0.1)  # stands in for slow work: an LLM or an API call
        words = len(ev.text.split())
        async with ctx.store.edit_state() as state:  # atomic read-modify-write
            state.in_flight -= 1
            state.counted += 1
            state.words += words
            counted, total = state.counted, state.paragraphs
        ctx.write_event_to_stream(
            Progress(message=f"paragraph {ev.index + 1}: {words} words ({counted}/{total} done)")
        )
        return Counted(index=ev.index, words=words)

    @step
    async def combine(self, ctx: Context[Stats], ev: Counted) -> StopEvent | None:
        expected = await ctx.store.get("paragraphs")
        counted = ctx.collect_events(ev, [Counted] * expected)  # fan in
        if counted is None:
            return None  # not all paragraphs are counted yet
        per_paragraph = [c.words for c in sorted(counted, key=lambda c: c.index)]
        return StopEvent(
            result={
                "paragraphs": len(per_paragraph),
                "words": sum(per_paragraph),
                "per_paragraph": per_paragraph,
            }
        )


async def main() -> None:
    started = time.perf_counter()
    handler = WordCount(timeout=10).run(text=DOCUMENT)
    async for event in handler.stream_events():
        if isinstance(event, Progress):
            print(f"streamed: {event.message}")
    summary = await handler
    stats = await handler.ctx.store.get_state()
    elapsed = time.perf_counter() - started
    print(
        f"result: {summary['words']} words in {summary['paragraphs']} paragraphs "
        f"{summary['per_paragraph']}"
    )
    print(f"state: {stats!r}")
    print(
        f"{stats.peak_in_flight} paragraphs were counted at once at most (num_workers=3); "
        f"the run took {elapsed:.2f} s"
    )


if __name__ == "__main__":
    asyncio.run(main())
