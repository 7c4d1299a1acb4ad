# ruff: noqa: I001  (the import order is the documentation's, kept verbatim)
"""Locking the State: an atomic read-modify-write with ``ctx.store.edit_state()``.

From the "Managing State" page (current version). The page shows only the
step; it is wrapped here in the workflow of the page's first example.

Run: python examples/state_edit_state.py
"""

import asyncio

from stalkflow import Workflow, Context, step
from stalkflow.events import StartEvent, StopEvent


class MyWorkflow(Workflow):
    @step
    async def my_step(self, ctx: Context, ev: StartEvent) -> StopEvent:
        async with ctx.store.edit_state() as state:
            current_count = state.get("count", 0)
            state["count"] = current_count + 1
            result = state["count"]
        return StopEvent(result=result)


async def main() -> None:
    result = await MyWorkflow().run()
    print(f"count after one locked update: {result}")


if __name__ == "__main__":
    asyncio.run(main())
