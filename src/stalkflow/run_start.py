"""Starting a run: its StartEvent, and the seed the store creates it from.

``Workflow.run`` builds the StartEvent from its arguments, then the seed: the
StartEvent routed to the steps that accept it or, for a context restored from a
mid-run snapshot, the snapshot's deliveries, waiters, collect buffers and
waiting events; with the state the run starts from.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from stalkflow.context.snapshot import restored_waiters, seed_deliveries
from stalkflow.core.deliveries import Delivery, Waiter
from stalkflow.core.ids import new_delivery_id
from stalkflow.errors import WorkflowRuntimeError
from stalkflow.events import StartEvent
from stalkflow.ports import RunSeed

if TYPE_CHECKING:
    from stalkflow.context.context import Context
    from stalkflow.plan import Plan

logger = logging.getLogger("stalkflow")


def start_event_for(
    start_event_class: type[StartEvent], start_event: StartEvent | None, kwargs: dict[str, Any]
) -> StartEvent:
    """The run's StartEvent: ``start_event`` itself, or one built from ``kwargs``."""
    if start_event is not None:
        if not isinstance(start_event, StartEvent):
            raise ValueError("The 'start_event' argument must be an instance of 'StartEvent'.")
        if kwargs:
            logger.warning(
                "Keyword arguments are not supported when 'run()' is invoked with the "
                "'start_event' parameter. These keyword arguments will be ignored: %s",
                kwargs,
            )
        return start_event
    try:
        return start_event_class(**kwargs)
    except Exception as exc:
        raise WorkflowRuntimeError(
            f"Failed creating a start event of type '{start_event_class.__name__}' "
            f"with the keyword arguments: {kwargs}"
        ) from exc


def seed_run(
    plan: Plan, workflow_name: str, ctx: Context[Any], run_id: str, event: StartEvent | None
) -> RunSeed:
    """The seed of run ``run_id``: ``event`` routed, or (no event) ``ctx``'s restored snapshot."""
    restored = ctx._restored
    deliveries: list[Delivery] = []
    waiters: list[Waiter] = []
    buffers = {}
    if event is None and restored is not None:
        deliveries = seed_deliveries(restored, run_id, workflow_name)
        waiters = restored_waiters(restored, run_id, workflow_name)
        buffers = restored.buffers
    elif event is not None:
        deliveries = [
            Delivery(run_id, workflow_name, name, event, new_delivery_id())
            for name in plan.routing.route(event).steps
        ]
    return RunSeed(
        caps=plan.caps,
        state=ctx._seed_state(),
        deliveries=deliveries,
        waiters=waiters,
        buffers=buffers,
        stream=[w.waiter_event for w in restored.waiters if w.waiter_event is not None]
        if event is None and restored is not None
        else [],
    )


def with_state(seed: RunSeed, state: str | None) -> RunSeed:
    """``seed`` starting from ``state`` (the previous run's, when the context had one)."""
    if state is seed.state:
        return seed
    return RunSeed(
        caps=seed.caps,
        state=state,
        deliveries=seed.deliveries,
        waiters=seed.waiters,
        buffers=seed.buffers,
    )
