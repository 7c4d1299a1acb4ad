"""The ``Store`` port's promises about lost deliveries, held against every adapter.

Claims and leases (``begin``, ``heartbeat``, fenced ``commit``), the start limit
(``EXHAUSTED``), the outbox of a committed delivery (``DUPLICATE`` with
``redispatch``), retries kept in the store until due, and the sweep that hands
out whatever missed its deadline. The stores here have short leases so that
deadlines pass within a test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest
from tests.contract._runs import delivery, start

from stalkflow.core.deliveries import Delivery, ErrorInfo
from stalkflow.core.runs import RunOutcome, RunStatus
from stalkflow.ports import BeginStatus, Commit, DeliveryPolicy, Store

LEASE_S = 0.3
GRACE_S = 0.8
POLICY = DeliveryPolicy(lease_s=LEASE_S, dispatch_grace_s=GRACE_S, max_deliveries=2)


@pytest.fixture
def store_policy() -> DeliveryPolicy:
    """The ``store`` fixture's stores (every adapter) have this suite's short leases."""
    return POLICY


def ids(deliveries: Sequence[Delivery]) -> list[str]:
    return sorted(d.delivery_id for d in deliveries)


async def swept(store: Store, **kwargs: object) -> list[tuple[str, bool]]:
    return sorted((r.delivery.delivery_id, r.scheduled) for r in await store.sweep(**kwargs))  # type: ignore[arg-type]


# --- claims ------------------------------------------------------------------------


async def test_a_claimed_delivery_is_busy_for_others_until_its_lease_runs_out(
    store: Store,
) -> None:
    _, (a1,) = await start(store, "a")

    first = await store.begin(a1, "token-1")
    assert first.status is BeginStatus.RUN and first.token == "token-1"
    assert first.begins == 1 and first.lease_s == LEASE_S
    busy = await store.begin(a1, "token-2")
    assert busy.status is BeginStatus.BUSY and busy.holder == "token-1"
    again = await store.begin(a1, "token-1")  # retried in place: the same claim
    assert again.status is BeginStatus.RUN and again.begins == 1

    await asyncio.sleep(LEASE_S + 0.1)
    taken = await store.begin(a1, "token-2")
    assert taken.status is BeginStatus.RUN and taken.begins == 2


async def test_a_dead_holders_claim_can_be_taken_over_at_once(store: Store) -> None:
    run_id, (a1,) = await start(store, "a")
    await store.begin(a1, "dead")

    taken = await store.begin(a1, "alive", take_over="dead")

    assert taken.status is BeginStatus.RUN and taken.token == "alive"
    assert await store.heartbeat(run_id, a1.delivery_id, "dead") is False


async def test_a_heartbeat_keeps_the_claim_alive(store: Store) -> None:
    run_id, (a1,) = await start(store, "a")
    await store.begin(a1, "token-1")

    for _ in range(4):
        await asyncio.sleep(LEASE_S / 3)
        assert await store.heartbeat(run_id, a1.delivery_id, "token-1") is True
    assert (await store.begin(a1, "token-2")).status is BeginStatus.BUSY
    assert await store.heartbeat(run_id, a1.delivery_id, "token-2") is False


async def test_a_commit_is_fenced_by_the_claim(store: Store) -> None:
    run_id, (a1,) = await start(store, "a")
    await store.begin(a1, "slow")
    await asyncio.sleep(LEASE_S + 0.1)
    await store.begin(a1, "rescuer")  # the slow one's lease ran out

    late = await store.commit(
        run_id, Commit(delivery=a1, routed=[delivery(run_id, "b")], token="slow")
    )
    assert not late.committed and list(late.released) == []
    rescued = await store.commit(run_id, Commit(delivery=a1, token="rescuer"))
    assert rescued.committed
    assert await store.heartbeat(run_id, a1.delivery_id, "rescuer") is False


async def test_a_delivery_started_too_often_is_exhausted(store: Store) -> None:
    run_id, (a1,) = await start(store, "a")
    for token in ("t1", "t2"):
        assert (await store.begin(a1, token, take_over="t1")).status is BeginStatus.RUN

    exhausted = await store.begin(a1, "t3", take_over="t2")

    assert exhausted.status is BeginStatus.EXHAUSTED and exhausted.begins == 3
    failed = await store.commit(run_id, Commit(delivery=a1, outcome=RunOutcome(RunStatus.FAILED)))
    assert failed.committed and failed.status is RunStatus.FAILED


# --- the outbox ----------------------------------------------------------------------


async def test_a_redelivered_committed_delivery_resends_only_overdue_children(
    store: Store,
) -> None:
    run_id, (a1,) = await start(store, "a")
    b1, b2 = delivery(run_id, "b", 1), delivery(run_id, "b", 2)
    await store.begin(a1, "t")
    result = await store.commit(run_id, Commit(delivery=a1, routed=[b1, b2], token="t"))
    assert ids(result.released) == ids([b1, b2])

    # children merely waiting in the broker's queue are not sent again
    waiting = await store.begin(a1, "other")
    assert waiting.status is BeginStatus.DUPLICATE and list(waiting.redispatch) == []

    await store.redispatch_soon(run_id, [b1.delivery_id, b2.delivery_id])  # their send failed
    await store.begin(b2, "t-b2")  # ... and one started after all
    duplicate = await store.begin(a1, "other")
    assert duplicate.status is BeginStatus.DUPLICATE
    assert ids(duplicate.redispatch) == ids([b1])
    assert list((await store.begin(a1, "other")).redispatch) == [], "each re-sent once per grace"


# --- the sweep -------------------------------------------------------------------------


async def test_the_sweep_hands_out_a_silent_claim_once_per_deadline(store: Store) -> None:
    _, (a1,) = await start(store, "a")
    await store.begin(a1, "dead-worker")
    assert await swept(store) == []

    await asyncio.sleep(LEASE_S + 0.1)
    assert await swept(store) == [(a1.delivery_id, False)]
    assert await swept(store) == [], "a fresh grace after each hand-out"
    # its claim went with it: whoever starts it next claims it
    assert (await store.begin(a1, "next")).status is BeginStatus.RUN


async def test_the_sweep_hands_out_a_delivery_never_started_after_the_grace(
    store: Store,
) -> None:
    run_id, (a1, a2) = await start(store, "a", "a")
    await store.begin(a2, "t")
    await asyncio.sleep(LEASE_S + 0.1)
    assert (a1.delivery_id, False) not in await swept(store), "within its grace"
    await store.heartbeat(run_id, a2.delivery_id, "t")

    await asyncio.sleep(GRACE_S)
    found = await swept(store)
    assert (a1.delivery_id, False) in found


async def test_a_retry_kept_in_the_store_is_handed_out_when_due(store: Store) -> None:
    run_id, (a1,) = await start(store, "a")
    retry = a1.retried(ErrorInfo("builtins.ValueError", "boom"), time.time())
    await store.begin(a1, "t")
    await store.commit(
        run_id, Commit(delivery=a1, retry=retry, retry_delay_s=0.5, retry_in_store=True, token="t")
    )

    assert await swept(store) == []
    await asyncio.sleep(0.6)
    assert await swept(store) == [(retry.delivery_id, True)]
    assert (await store.begin(retry, "t2")).status is BeginStatus.RUN


async def test_the_sweep_skips_finished_runs_and_other_workflows(store: Store) -> None:
    _, (a1,) = await start(store, "a")
    other_id, (o1,) = await start(store, "a")
    await store.begin(a1, "t")
    await store.begin(o1, "t")
    await store.finish_run(other_id, RunOutcome(RunStatus.CANCELLED))
    await asyncio.sleep(LEASE_S + 0.1)

    assert await swept(store, workflows=["another"]) == []
    assert await swept(store, workflows=["contract"]) == [(a1.delivery_id, False)]
    assert (await store.begin(o1, "t2")).status is BeginStatus.FINISHED


async def test_redispatch_soon_leaves_claimed_deliveries_alone(store: Store) -> None:
    run_id, (a1, a2) = await start(store, "a", "a")
    await store.begin(a2, "t")

    await store.redispatch_soon(run_id, [a1.delivery_id, a2.delivery_id])

    assert await swept(store) == [(a1.delivery_id, False)]
