"""Sample workflows served in the server tests.

Importable as ``tests.server.server_workflows`` by the uvicorn process that the
live-client test starts (``run_server(..., "tests.server.server_workflows")``
serves each class here under its class name), and by the in-process tests.
Every class must therefore be constructible with no arguments.
"""

from __future__ import annotations

from stalkflow import Context, Workflow, step
from stalkflow.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
)


class Progress(Event):
    n: int


class Greeter(Workflow):
    """Streams three Progress events, then greets ``name``."""

    @step
    async def greet(self, ctx: Context, ev: StartEvent) -> StopEvent:
        for n in range(3):
            ctx.write_event_to_stream(Progress(n=n))
        return StopEvent(result=f"hello {ev.get('name', 'world')}")


class Failing(Workflow):
    @step
    async def explode(self, ev: StartEvent) -> StopEvent:
        raise ValueError(f"boom: {ev.get('why', 'no reason')}")


class Asker(Workflow):
    """Asks for a name (InputRequiredEvent) and greets the HumanResponseEvent's ``response``."""

    @step
    async def ask(self, ev: StartEvent) -> InputRequiredEvent:
        return InputRequiredEvent(prefix="name?")

    @step
    async def answer(self, ev: HumanResponseEvent) -> StopEvent:
        return StopEvent(result=f"hi {ev.response}")


class Chatty(Workflow):
    """Each human response ``N`` streams ``Progress(n=N)``; the response ``stop`` ends the run."""

    @step
    async def begin(self, ctx: Context, ev: StartEvent) -> InputRequiredEvent:
        ctx.write_event_to_stream(Progress(n=0))
        return InputRequiredEvent(prefix="more?")

    @step
    async def reply(self, ctx: Context, ev: HumanResponseEvent) -> InputRequiredEvent | StopEvent:
        if ev.response == "stop":
            return StopEvent(result="done")
        ctx.write_event_to_stream(Progress(n=int(ev.response)))
        return InputRequiredEvent(prefix="more?")


class Order(StartEvent):
    item: str
    quantity: int = 1


class Receipt(StopEvent):
    line: str
    total_sold: int


class Shop(Workflow):
    """A typed start event and a StopEvent subclass as the result."""

    @step
    async def sell(self, ctx: Context, ev: Order) -> Receipt:
        sold = ev.quantity + await ctx.store.get("sold", default=0)
        await ctx.store.set("sold", sold)
        return Receipt(line=f"{ev.quantity} x {ev.item}", total_sold=sold)


class Approval(HumanResponseEvent):
    approved: bool


class Gate(Workflow):
    """Waits (``wait_for_event``) for an Approval, a type no step signature mentions."""

    @step
    async def gate(self, ctx: Context, ev: StartEvent) -> StopEvent:
        approval = await ctx.wait_for_event(
            Approval, waiter_event=InputRequiredEvent(prefix="approve?"), timeout=20
        )
        return StopEvent(result="approved" if approval.approved else "rejected")
