"""``WorkflowTestRunner``: run a workflow and collect what it streamed."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import TYPE_CHECKING, Any

from stalkflow.events import Event, StartEvent

if TYPE_CHECKING:
    from stalkflow.context.context import Context
    from stalkflow.workflow import Workflow


@dataclasses.dataclass
class WorkflowTestResult:
    """The events a run streamed, counted by type, with its result and context."""

    collected: list[Event]
    event_types: dict[type[Event], int]
    result: Any
    ctx: Context[Any]


class WorkflowTestRunner:
    """Runs a workflow once and records its stream (internal events included by default)."""

    def __init__(self, workflow: Workflow) -> None:
        self._workflow = workflow

    async def run(
        self,
        start_event: StartEvent | None = None,
        ctx: Context[Any] | None = None,
        expose_internal: bool = True,
        exclude_events: list[type[Event]] | None = None,
    ) -> WorkflowTestResult:
        handler = self._workflow.run(start_event=start_event or StartEvent(), ctx=ctx)
        excluded = tuple(exclude_events or ())
        collected = [
            event
            async for event in handler.stream_events(expose_internal=expose_internal)
            if not (excluded and isinstance(event, excluded))
        ]
        result = await handler
        counts = Counter(type(event) for event in collected)
        return WorkflowTestResult(
            collected=collected, event_types=dict(counts), result=result, ctx=handler.ctx
        )
