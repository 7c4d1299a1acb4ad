# ruff: noqa: I001  (the import order is the documentation's, kept verbatim)
"""Typed state, one field at a time: ``get``/``set`` by name, then ``get_state()``.

From the "Managing State" page (current version). The page shows only the
step; it is wrapped here in a workflow with the page's ``CounterState``.

Run: python examples/typed_state_fields.py
"""

import asyncio

from pydantic import BaseModel, Field

from stalkflow import Workflow, Context, step
from stalkflow.events import StartEvent, StopEvent


class CounterState(BaseModel):
    count: int = Field(default=0)


class MyWorkflow(Workflow):
    @step
    async def start(self, ctx: Context[CounterState], ev: StartEvent) -> StopEvent:
        current = await ctx.store.get("count")
        await ctx.store.set("count", current + 1)
        state = await ctx.store.get_state()
        return StopEvent(result=state.count)


async def main() -> None:
    result = await MyWorkflow().run()
    print(f"typed count after one run: {result}")


if __name__ == "__main__":
    asyncio.run(main())
