# ruff: noqa: I001  (the import order is the documentation's, kept verbatim)
"""Managing State (earlier version of the page): a counter kept in the untyped store.

This version of the step returns a bare ``StopEvent()``, so the run's result
is None; the count is read back from the context's store after the run.

Run: python examples/state_counter_no_result.py
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
        return StopEvent()


async def main() -> None:
    handler = MyWorkflow().run()
    result = await handler
    count = await handler.ctx.store.get("count")
    print(f"result: {result!r}, count in state: {count}")


if __name__ == "__main__":
    asyncio.run(main())
