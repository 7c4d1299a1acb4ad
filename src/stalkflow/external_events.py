"""An event sent into a run from outside its steps: routed at once, or held for a waiter.

A human's answer, a client's event: routed to the steps that accept it and the
waiters it matches. One that neither takes yet is held by the sending process
and offered again after each new entry of the run's stream, until a waiter
takes it or the run ends (see ``Engine.send_event``).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from stalkflow.core.deliveries import Delivery
from stalkflow.core.ids import child_delivery_id, new_delivery_id
from stalkflow.core.routing import RoutingTable
from stalkflow.core.runs import RunRecord
from stalkflow.errors import BackendError
from stalkflow.events import Event
from stalkflow.ports import Commit

if TYPE_CHECKING:
    from stalkflow.engine import Engine

logger = logging.getLogger("stalkflow.engine")

#: How often an event held for a run's waiters checks whether the run has ended.
HOLD_POLL_S = 1.0


@dataclasses.dataclass(frozen=True)
class ExternalEvent:
    """``event`` for run ``run`` (to ``step`` only, if given), routed by ``routing``."""

    run: RunRecord
    routing: RoutingTable
    event: Event
    step: str | None

    async def route(self, engine: Engine) -> bool:
        """Route to the steps accepting the event and the waiters it matches; False: none."""
        run_id = self.run.run_id
        waiters = await engine.store.waiters(run_id)
        route = self.routing.route(self.event, step=self.step, waiters=waiters)
        if not route.steps and not route.waiters:
            return False
        origin = new_delivery_id()
        routed = [
            Delivery(
                run_id, self.run.workflow, name, self.event, child_delivery_id(origin, 0, name)
            )
            for name in route.steps
        ]
        resolved = [
            (
                waiter.waiter_id,
                dataclasses.replace(
                    waiter.delivery,
                    delivery_id=child_delivery_id(origin, 0, waiter.waiter_id),
                    resolved={**waiter.delivery.resolved, waiter.waiter_id: self.event},
                ),
            )
            for waiter in route.waiters
        ]
        result = await engine.store.commit(
            run_id, Commit(delivery=None, routed=routed, resolved=resolved)
        )
        await engine.send_released(run_id, result.released)
        return True

    async def hold_for_waiter(self, engine: Engine) -> None:
        """Offer the event to the run's waiters after each step change, until one takes it.

        Every commit (a waiter registering included) appends to the run's stream,
        so following the stream from a point taken before each look at the
        waiters misses none. The event is dropped when the run ends.
        """
        store, run_id, name = engine.store, self.run.run_id, type(self.event).__name__
        entries = await store.read_stream(run_id, -1, 0)
        cursor = entries[-1].sequence if entries else -1
        try:
            while not await self.route(engine):
                entries = await store.read_stream(run_id, cursor, HOLD_POLL_S)
                if entries:
                    cursor = entries[-1].sequence
                record = await store.get_run(run_id)
                if record is None or record.finished:
                    logger.info(
                        "Run %s ended before a step waited for the %s sent to it", run_id, name
                    )
                    return
        except BackendError as exc:
            logger.warning("Run %s: dropped the %s held for its waiters: %s", run_id, name, exc)
