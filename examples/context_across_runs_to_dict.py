# ruff: noqa: I001  (the import order is the documentation's, kept verbatim)
"""Maintaining Context Across Runs, with the optional save/restore step enabled.

The page's snippet with its commented ``ctx.to_dict()`` /
``Context.from_dict()`` lines uncommented: the context is saved to a plain
(JSON-compatible) dict after the first run and restored from it before the
second one, which continues from the saved state: 1, then 2.

Run: python examples/context_across_runs_to_dict.py
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
    ctx_dict = ctx.to_dict()
    ctx = Context.from_dict(workflow, ctx_dict)
    print(f"restored context: count = {await ctx.store.get('count')}")

    # continue with next run
    handler = workflow.run(ctx=ctx)
    result = await handler
    print(f"second run, restored context: count = {result}")


if __name__ == "__main__":
    asyncio.run(main())
