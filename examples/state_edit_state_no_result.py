# ruff: noqa: I001  (the import order is the documentation's, kept verbatim)
"""Locking the State (earlier version of the page): initialize and increment under the lock.

The page shows only the step; it is wrapped here in the workflow of the page's
first example. The step returns a bare ``StopEvent()``; the count is read back
from the context's store after the run.

Run: python examples/state_edit_state_no_result.py
"""

import asyncio

from stalkflow import Workflow, Context, step
from stalkflow.events import StartEvent, StopEvent


class MyWorkflow(Workflow):
    @step
    async def my_step(self, ctx: Context, ev: StartEvent) -> StopEvent:
        # No other steps can access the state while the `with` block is running
        async with ctx.store.edit_state() as ctx_state:
            if "count" not in ctx_state:
                ctx_state["count"] = 0
            ctx_state["count"] += 1
        return StopEvent()


async def main() -> None:
    handler = MyWorkflow().run()
    result = await handler
    count = await handler.ctx.store.get("count")
    print(f"result: {result!r}, count in state: {count}")


if __name__ == "__main__":
    asyncio.run(main())
