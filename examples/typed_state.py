# ruff: noqa: I001  (the import order is the documentation's, kept verbatim)
"""Adding Typed State: a pydantic model as the workflow's state.

From the "Managing State" page (current version). ``Context[CounterState]``
makes the state a ``CounterState``, initialized from its defaults.

Run: python examples/typed_state.py
"""

import asyncio

from pydantic import BaseModel, Field

from stalkflow import Workflow, Context, step
from stalkflow.events import (
    StartEvent,
    StopEvent,
)


class CounterState(BaseModel):
    count: int = Field(default=0)


class MyWorkflow(Workflow):
    @step
    async def start(self, ctx: Context[CounterState], ev: StartEvent) -> StopEvent:
        # Allows for atomic state updates
        async with ctx.store.edit_state() as state:
            state.count += 1

        return StopEvent(result="Done!")


async def main() -> None:
    workflow = MyWorkflow()
    handler = workflow.run()
    result = await handler
    state = await handler.ctx.store.get_state()
    print(f"result: {result!r}, state: {state!r}")


if __name__ == "__main__":
    asyncio.run(main())
