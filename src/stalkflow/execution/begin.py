"""The begin phase: should this delivery run now? If so, claim it.

One store operation answers and claims: the run is live and not past its
deadline, the delivery not committed, not claimed by another live execution,
not started too often. The same operation publishes the step's RUNNING notice.
Answers other than ``RUN`` end the execution here (``settle``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from stalkflow.core.deliveries import Delivery
from stalkflow.events import StepState, StepStateChanged
from stalkflow.execution.claims import holder_is_dead
from stalkflow.execution.dispatch import dispatch
from stalkflow.execution.settings import describe, logger
from stalkflow.ports import Begin, BeginStatus

if TYPE_CHECKING:
    from stalkflow.engine import Engine


def running_notice(delivery: Delivery, worker_id: str) -> StepStateChanged:
    """What the run's stream shows when a step starts on ``delivery`` in slot ``worker_id``."""
    return StepStateChanged(
        name=delivery.step,
        step_state=StepState.RUNNING,
        worker_id=worker_id,
        input_event_name=type(delivery.event).__name__,
    )


async def claim(engine: Engine, delivery: Delivery, token: str, worker_id: str) -> Begin:
    """Begin ``delivery`` under ``token``; take over the claim of a dead local holder."""
    store = engine.store
    notice = running_notice(delivery, worker_id)
    begin = await store.begin(delivery, token, running=notice)
    if begin.status is BeginStatus.BUSY and holder_is_dead(begin.holder):
        # Its holder was a process of this machine that died (a killed pool
        # child, whose message the broker redelivered at once): no need to wait
        # for its lease to run out.
        logger.warning("Taking over %s from dead claim %s", describe(delivery), begin.holder)
        begin = await store.begin(delivery, token, take_over=begin.holder, running=notice)
    return begin


async def settle(engine: Engine, delivery: Delivery, begin: Begin) -> None:
    """End an execution whose begin did not answer ``RUN`` (nor ``EXHAUSTED``)."""
    status = begin.status
    if status is BeginStatus.EXPIRED and begin.run is not None:
        await engine.expire(begin.run)
    elif status is BeginStatus.DUPLICATE and begin.redispatch:
        # The first execution committed, then could not send what it released
        # (the broker was away): send it now, not at the next sweep.
        logger.warning(
            "Re-sending %d delivery(ies) that the commit of %s released and that never started",
            len(begin.redispatch),
            describe(delivery),
        )
        await dispatch(engine, delivery.run_id, begin.redispatch)
    elif status is BeginStatus.DUPLICATE:
        logger.debug("Skipped %s: already committed", describe(delivery))
    else:
        level = logging.INFO if status is BeginStatus.BUSY else logging.DEBUG
        logger.log(level, "Skipped %s: %s", describe(delivery), status.value)
