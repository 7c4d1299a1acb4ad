"""What one step execution accumulates: sent events, stream writes, a waiter.

A ``StepScope`` lives for one delivery on one worker. Events sent with
``ctx.send_event`` are routed when the step commits, in one atomic store
operation with its returned event, so a re-executed delivery routes nothing
twice. Stream writes go out as they are written, so clients see a long step's
progress live.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from stalkflow.core.deliveries import Delivery, Waiter
from stalkflow.events import Event

if TYPE_CHECKING:
    from stalkflow.context.context import Context

# A weak reference: every callback or task a step schedules (``loop.call_later``,
# ``asyncio.create_task``) captures a copy of the step's contextvars, and a strong
# reference there would keep the step's Context, and through it the workflow, alive
# as long as such a handle lives. The step's own frame holds the Context strongly
# while the step runs, so readers always see it then (upstream holds it weakly too).
_current: contextvars.ContextVar[weakref.ReferenceType[Context[Any]] | None] = (
    contextvars.ContextVar("stalkflow_step_context", default=None)
)


class WaitingForEvent(BaseException):
    """Raised inside a step by ``wait_for_event`` to suspend it until the event arrives.

    A ``BaseException`` so that a step's ``except Exception`` does not swallow it.
    """

    def __init__(self, waiter: Waiter, waiter_event: Event | None) -> None:
        super().__init__(waiter.waiter_id)
        self.waiter = waiter
        self.waiter_event = waiter_event


@dataclasses.dataclass
class StepScope:
    delivery: Delivery
    # the smallest slot index free among this run's executions of the step here
    worker_id: str = "0"
    sent: list[tuple[Event, str | None]] = dataclasses.field(default_factory=list)
    writes: list[asyncio.Future[Any]] = dataclasses.field(default_factory=list)

    @property
    def resolved(self) -> Mapping[str, Event | None]:
        return self.delivery.resolved

    async def flush_writes(self) -> None:
        """Wait for the stream writes this step made (upstream awaits them too)."""
        while self.writes:
            pending, self.writes = self.writes, []
            await asyncio.gather(*pending, return_exceptions=True)


def current_context() -> Context[Any] | None:
    """The Context of the step running in this task, or None outside any step."""
    ref = _current.get()
    return None if ref is None else ref()


def enter(ctx: Context[Any]) -> contextvars.Token[weakref.ReferenceType[Context[Any]] | None]:
    """Bind ``ctx`` as the current step's Context; undo with :func:`leave`."""
    return _current.set(weakref.ref(ctx))


def leave(token: contextvars.Token[weakref.ReferenceType[Context[Any]] | None]) -> None:
    _current.reset(token)
