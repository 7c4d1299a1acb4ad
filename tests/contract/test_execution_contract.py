"""The ``Store`` promises that keep one step execution to two store operations.

``begin`` publishes the step's RUNNING notice in the same operation and says
whether the run has waiters, so that the executor reads them only when there
are some; a commit routed before a waiter was registered is refused as
``stale`` rather than applied; a ``wait_for_event`` timeout can be kept in the
store, where the sweep expires the waiter; ``collect`` stays cheap however many
events a set expects. Held against every adapter, with short leases.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from tests.contract._runs import Ping, delivery, start

from stalkflow.core.deliveries import Delivery, Waiter
from stalkflow.core.runs import RunRecord
from stalkflow.events import Event, StepState, StepStateChanged
from stalkflow.ports import BeginStatus, Commit, DeliveryPolicy, RunSeed, Store

POLICY = DeliveryPolicy(lease_s=0.3, dispatch_grace_s=0.8, max_deliveries=3)


class Answer(Event):
    text: str = ""


@pytest.fixture
def store_policy() -> DeliveryPolicy:
    """The ``store`` fixture's stores (every adapter) have this suite's short leases."""
    return POLICY


def notice(state: StepState = StepState.RUNNING) -> StepStateChanged:
    return StepStateChanged(name="a", step_state=state, worker_id="0", input_event_name="Ping")


def waiter(parent: Delivery, waiter_id: str = "w1", timeout_s: float | None = 30.0) -> Waiter:
    return Waiter(waiter_id, Answer, {}, parent, timeout_s)


async def stream_events(store: Store, run_id: str) -> list[Event]:
    return [entry.event for entry in await store.read_stream(run_id, -1, 0)]


# --- begin ---------------------------------------------------------------------------


async def test_begin_publishes_the_running_notice_when_the_step_runs(store: Store) -> None:
    run_id, (a1,) = await start(store, "a")

    begun = await store.begin(a1, "t1", running=notice())

    assert begun.status is BeginStatus.RUN
    assert await stream_events(store, run_id) == [notice()]


async def test_begin_publishes_nothing_when_the_step_does_not_run(store: Store) -> None:
    run_id, (a1,) = await start(store, "a")
    await store.begin(a1, "t1", running=notice())

    busy = await store.begin(a1, "t2", running=notice())
    await store.commit(run_id, Commit(delivery=a1, token="t1"))
    duplicate = await store.begin(a1, "t3", running=notice())

    assert (busy.status, duplicate.status) == (BeginStatus.BUSY, BeginStatus.DUPLICATE)
    assert await stream_events(store, run_id) == [notice()]


async def test_begin_counts_the_runs_waiters(store: Store) -> None:
    run_id, (a1, a2, _) = await start(store, "a", "a", "a")
    first = await store.begin(a1, "t1")
    await store.commit(run_id, Commit(delivery=a1, token="t1", waiter=waiter(a1)))

    second = await store.begin(a2, "t2")

    assert (first.waiters, second.waiters) == (0, 1)
    assert second.waiter_seq > first.waiter_seq


# --- stale commits -------------------------------------------------------------------


async def test_a_commit_routed_before_a_new_waiter_is_refused_as_stale(store: Store) -> None:
    run_id, (a1, a2, _) = await start(store, "a", "a", "b")
    begun = await store.begin(a1, "t1")  # no waiter yet: routed without reading any
    await store.begin(a2, "t2")
    await store.commit(run_id, Commit(delivery=a2, token="t2", waiter=waiter(a2)))

    routed = delivery(run_id, "b", 7)
    stale = await store.commit(
        run_id,
        Commit(delivery=a1, token="t1", routed=[routed], waiter_seq=begun.waiter_seq),
    )

    assert stale.stale and not stale.committed
    # nothing was applied: the delivery is still in progress, and commits later
    again = await store.commit(run_id, Commit(delivery=a1, token="t1", routed=[routed]))
    assert again.committed and [d.delivery_id for d in again.released] == [routed.delivery_id]


async def test_a_commit_is_not_stale_when_no_waiter_was_registered(store: Store) -> None:
    run_id, (a1,) = await start(store, "a")
    begun = await store.begin(a1, "t1")

    result = await store.commit(
        run_id, Commit(delivery=a1, token="t1", waiter_seq=begun.waiter_seq)
    )

    assert result.committed and not result.stale


# --- waiter timeouts kept in the store -------------------------------------------------


async def test_a_waiter_timeout_kept_in_the_store_is_expired_by_the_sweep(store: Store) -> None:
    run_id, (a1,) = await start(store, "a")
    await store.begin(a1, "t1")
    waiting = waiter(a1, timeout_s=0.2)
    await store.commit(
        run_id, Commit(delivery=a1, token="t1", waiter=waiting, waiter_timeout_in_store=True)
    )

    assert not [r for r in await store.sweep(10, ["contract"]) if r.delivery.run_id == run_id]
    await asyncio.sleep(0.35)
    swept = [r for r in await store.sweep(10, ["contract"]) if r.delivery.run_id == run_id]

    assert [(r.delivery.delivery_id, r.scheduled) for r in swept] == [
        (waiting.timeout_redelivery().delivery_id, True)
    ]
    assert swept[0].delivery.resolved == {"w1": None}
    assert list(await store.waiters(run_id)) == []
    assert await store.sweep(10, ["contract"]) == []


async def test_a_resolved_waiter_does_not_time_out(store: Store) -> None:
    run_id, (a1,) = await start(store, "a")
    await store.begin(a1, "t1")
    waiting = waiter(a1, timeout_s=0.2)
    await store.commit(
        run_id, Commit(delivery=a1, token="t1", waiter=waiting, waiter_timeout_in_store=True)
    )
    answer = Delivery(run_id, "contract", "a", Ping(), "answered", resolved={"w1": Answer()})
    await store.commit(run_id, Commit(delivery=None, resolved=[("w1", answer)]))

    await asyncio.sleep(0.35)
    swept = [r for r in await store.sweep(10, ["contract"]) if r.delivery.run_id == run_id]

    assert [r.delivery.delivery_id for r in swept] == []


async def test_restored_waiters_can_keep_their_timeouts_in_the_store(store: Store) -> None:
    run_id = f"run-{uuid.uuid4().hex[:12]}"
    parent = delivery(run_id)
    restored = waiter(parent, timeout_s=0.2)
    now = time.time()
    await store.create_run(
        RunRecord(run_id=run_id, workflow="contract", created_at=now),
        RunSeed(caps={"a": 4}, waiters=[restored], timeouts_in_store=frozenset({"w1"})),
    )

    await asyncio.sleep(0.35)
    swept = [r for r in await store.sweep(10, ["contract"]) if r.delivery.run_id == run_id]

    assert [r.delivery.resolved for r in swept] == [{"w1": None}]


# --- collect ---------------------------------------------------------------------------


async def test_collect_takes_each_kind_in_arrival_order(store: Store) -> None:
    run_id, _ = await start(store)
    key = ("a", "default")
    expected: list[type[Event]] = [Ping, Answer, Ping]

    assert store.collect(run_id, key, "d1", Ping(n=1), expected) is None
    assert store.collect(run_id, key, "d2", Ping(n=2), expected) is None
    assert store.collect(run_id, key, "d3", Ping(n=3), expected) is None
    complete = store.collect(run_id, key, "d4", Answer(text="x"), expected)

    assert complete == [Ping(n=1), Answer(text="x"), Ping(n=2)]


async def test_collect_of_a_large_set_hands_it_out_once(store: Store) -> None:
    run_id, _ = await start(store)
    key = ("a", "many")
    count = 500
    expected: list[type[Event]] = [Ping] * count

    results = [store.collect(run_id, key, f"d{n}", Ping(n=n), expected) for n in range(count + 20)]

    complete = [r for r in results if r is not None]
    assert len(complete) == 1 and results[count - 1] is not None
    assert [event.n for event in complete[0]] == list(range(count))  # type: ignore[attr-defined]


async def test_a_finished_run_keeps_its_stream_and_refuses_deliveries(store: Store) -> None:
    from stalkflow.core.runs import RunOutcome, RunStatus
    from stalkflow.events import StopEvent

    run_id, (a1, a2) = await start(store, "a", "a")
    await store.begin(a1, "t1")
    done = StopEvent(result="done")
    await store.commit(
        run_id,
        Commit(
            delivery=a1,
            token="t1",
            outcome=RunOutcome(RunStatus.COMPLETED, result=done, terminal_event=done),
        ),
    )

    assert (await store.begin(a1, "t2")).status is BeginStatus.FINISHED
    assert (await store.begin(a2, "t3")).status is BeginStatus.FINISHED
    assert not (await store.commit(run_id, Commit(delivery=a2, token="t3"))).committed
    assert await stream_events(store, run_id) == [done]
