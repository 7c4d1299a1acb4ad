"""After the commit: send what it released, and fail a run that stalled.

A dispatch that fails leaves the deliveries in the store, marked to be sent
again soon (``redispatch_soon``); the error is raised so that the transport
retries the message, whose next execution (``DUPLICATE``) re-sends them from
the store's outbox. A sweep would too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from stalkflow.core.deliveries import Delivery, ErrorInfo
from stalkflow.core.runs import RunOutcome, RunStatus, is_stalled, stalled_message
from stalkflow.errors import BackendError, WorkflowStalledError
from stalkflow.events import WorkflowFailedEvent
from stalkflow.execution.settings import first_line, logger
from stalkflow.ports import Commit, CommitResult

if TYPE_CHECKING:
    from stalkflow.engine import Engine


async def after_commit(
    engine: Engine, run_id: str, result: CommitResult, commit: Commit | None
) -> None:
    """Dispatch what ``result`` released (and a retry, a waiter's timer); fail a stalled run."""
    failure: BackendError | None = None
    if result.committed:
        sends: list[tuple[Sequence[Delivery], float]] = []
        if result.released:
            sends.append((result.released, 0.0))
        if commit is not None and commit.retry is not None and not commit.retry_in_store:
            sends.append(([commit.retry], commit.retry_delay_s))
        for deliveries, delay_s in sends:
            try:
                await dispatch(engine, run_id, deliveries, delay_s)
            except BackendError as exc:
                failure = failure or exc
        if commit is not None and commit.waiter is not None and not commit.waiter_timeout_in_store:
            try:
                await engine.schedule_waiter_timeout(run_id, commit.waiter)
            except BackendError as exc:
                failure = failure or exc
    if failure is not None:
        # The commit stands; what it released is in the store. Raising makes the
        # transport retry or requeue this message, whose next execution re-sends
        # it (DUPLICATE + outbox); the sweep sends it otherwise.
        raise failure
    if result.status.finished:
        engine.transport.run_finished(run_id)
        return
    if result.committed and is_stalled(
        in_flight=result.in_flight, waiters=result.waiters, hitl=result.hitl
    ):
        await fail_stalled(engine, run_id)


async def fail_stalled(engine: Engine, run_id: str) -> None:
    """Fail a run that has nothing in flight and no waiter: it can never finish by itself."""
    run = await engine.store.get_run(run_id)
    if run is None or run.finished:
        return
    error = WorkflowStalledError(stalled_message(run_id, run.workflow), run_id=run_id)
    outcome = RunOutcome(
        RunStatus.FAILED,
        error=ErrorInfo.from_exception(error),
        terminal_event=WorkflowFailedEvent(
            step_name="<stalled>", exception=error, attempts=0, elapsed_seconds=0.0
        ),
    )
    if await engine.store.finish_run(run_id, outcome):
        engine.transport.run_finished(run_id)


async def dispatch(
    engine: Engine, run_id: str, deliveries: Sequence[Delivery], delay_s: float = 0.0
) -> None:
    """Send deliveries; if that fails, have the store's sweep send them instead."""
    try:
        await engine.transport.dispatch(deliveries, delay_s)
    except BackendError as exc:
        await unsent(engine, deliveries, delay_s, exc)
        raise


async def unsent(
    engine: Engine, deliveries: Sequence[Delivery], delay_s: float, error: BaseException
) -> None:
    """Deliveries that could not be sent: mark them in the store to be sent again soon."""
    by_run: dict[str, list[str]] = {}
    for delivery in deliveries:
        by_run.setdefault(delivery.run_id, []).append(delivery.delivery_id)
    for run_id, ids in by_run.items():
        logger.warning(
            "Could not send %d delivery(ies) of run %s (%s); they stay in the store and are "
            "sent again by a redelivery or a sweep",
            len(ids),
            run_id,
            first_line(error),
        )
        with contextlib.suppress(BackendError):
            await engine.store.redispatch_soon(run_id, ids, delay_s)
