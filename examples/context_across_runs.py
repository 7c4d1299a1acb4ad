# ruff: noqa: I001  (the import order is the documentation's, kept verbatim)
"""Maintaining Context Across Runs: pass the same ``Context`` to ``.run()`` twice.

From the "Managing State" page. The workflow is the page's first example (the
counter that returns its count), so the state carried from the first run into
the second one is visible in the results: 1, then 2. The page's snippet is in
``main()`` as written, with a ``print`` after each run.

Run: python examples/context_across_runs.py
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
    workflow = MyWorkflow()
    ctx = Context(workflow)

    handler = workflow.run(ctx=ctx)
    result = await handler
    print(f"first run: count = {result}")

    # Optional: save the ctx somewhere and restore
    # ctx_dict = ctx.to_dict()
    # ctx = Context.from_dict(workflow, ctx_dict)

    # continue with next run
    handler = workflow.run(ctx=ctx)
    result = await handler
    print(f"second run, same context: count = {result}")


if __name__ == "__main__":
    asyncio.run(main())
