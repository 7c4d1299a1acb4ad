# ruff: noqa: I001  (the import order is the documentation's, kept verbatim)
"""Managing State: the untyped state store, read and written through ``ctx.store``.

From the "Managing State" page (current version). Each run of a fresh context
starts from an empty state, so the counter is 1.

Run: python examples/state_counter.py
"""

import asyncio

from stalkflow import Workflow, Context, step
from stalkflow.events import StartEvent, StopEvent


class MyWorkflow(Workflow):
    @step
    async def my_step(self, ctx: Context, ev: StartEvent) -> StopEvent:
        current_count = await ctx.store.get("count", default=0)
        current_count += 1
        await ctx.store.set("count", current_count)
        return StopEvent(result=current_count)


async def main() -> None:
    result = await MyWorkflow().run()
    print(f"count after one run: {result}")


if __name__ == "__main__":
    asyncio.run(main())
