"""The sweep: workers re-send what missed its deadline in the store.

Deliveries whose claim's lease ran out with no heartbeat (their worker died,
or hangs with its event loop blocked), released deliveries never started
within the dispatch grace (their message was lost), retries kept in the store
until due, and the step re-runs of waiters whose timeout (kept in the store)
has passed.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from stalkflow.core.deliveries import Delivery
from stalkflow.errors import BackendError
from stalkflow.execution.dispatch import dispatch
from stalkflow.execution.settings import describe, first_line, logger

if TYPE_CHECKING:
    from stalkflow.engine import Engine


async def sweep_once(engine: Engine) -> int:
    """Send the deliveries the store hands out; returns how many were sent."""
    workflows = engine.registry.names()
    if not workflows:
        return 0
    recovered = await engine.store.sweep(engine.execution.sweep_limit, workflows)
    by_run: dict[str, list[Delivery]] = {}
    for item in recovered:
        if not item.scheduled:
            logger.warning(
                "Re-sending %s: no sign of life before its deadline (never sent, "
                "its message was lost, or its worker died)",
                describe(item.delivery),
            )
        by_run.setdefault(item.delivery.run_id, []).append(item.delivery)
    failure: BackendError | None = None
    for run_id, deliveries in by_run.items():
        try:
            await dispatch(engine, run_id, deliveries)
        except BackendError as exc:
            failure = failure or exc
    if failure is not None:
        raise failure
    return len(recovered)


async def sweep_forever(engine: Engine, interval_s: float) -> None:
    """``sweep_once`` every ``interval_s`` seconds, surviving store and broker outages."""
    failing = False
    while True:
        try:
            await sweep_once(engine)
        except Exception as exc:
            if not failing:
                logger.warning("Sweep failed, will retry: %s", first_line(exc))
            failing = True
        else:
            if failing:
                logger.info("Sweeps work again")
            failing = False
        await asyncio.sleep(interval_s)
