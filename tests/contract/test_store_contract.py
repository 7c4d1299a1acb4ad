"""The ``Store`` port's promises, held against every adapter (``store`` fixture).

Each test states one promise of ``stalkflow.ports.Store`` that the executor and
the engine rely on: runs and their seed, admission under the per-step caps,
idempotent commits, waiters, collect buffers, versioned state with a fenced edit
lock, and the run's event stream. Timings are generous (no bound tighter than
50 ms) so that a networked adapter passes on a loaded machine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from stalkflow.core.deliveries import Delivery, ErrorInfo, Waiter
from stalkflow.core.runs import RunOutcome, RunRecord, RunStatus
from stalkflow.errors import RunExistsError
from stalkflow.events import Event, InputRequiredEvent, StepStateChanged, StopEvent
from stalkflow.ports import (
    BeginStatus,
    Commit,
    RunSeed,
    SaveStatus,
    StateSnapshot,
    Store,
    StreamEntry,
)

# Blocking calls that must return promptly get this long before a test gives up.
PROMPT_S = 2.0
# Long enough that a call still pending after it is really blocked.
SETTLE_S = 0.1


class Ping(Event):
    n: int = 0


class Pong(Event):
    n: int = 0


class Answer(Event):
    text: str = ""


class Item(Event):
    n: int = 0


# --- helpers -----------------------------------------------------------------------


def new_id(kind: str = "run") -> str:
    return f"{kind}-{uuid.uuid4().hex[:12]}"


def delivery(
    run_id: str, step: str = "a", event: Event | None = None, delivery_id: str | None = None
) -> Delivery:
    return Delivery(
        run_id=run_id,
        workflow="contract",
        step=step,
        event=event if event is not None else Ping(),
        delivery_id=delivery_id or new_id("d"),
    )


def record(run_id: str | None = None, workflow: str = "contract", **fields: Any) -> RunRecord:
    now = time.time()
    return RunRecord(
        run_id=run_id or new_id(), workflow=workflow, created_at=now, updated_at=now, **fields
    )


async def start_run(
    store: Store,
    *steps: str,
    caps: dict[str, int] | None = None,
    run: RunRecord | None = None,
    **seed: Any,
) -> tuple[str, list[Delivery], list[Delivery]]:
    """Create a run whose seed holds one delivery per name in ``steps``.

    Returns the run id, the seed deliveries, and the ones released at once.
    """
    run = run or record()
    deliveries = [delivery(run.run_id, step, Ping(n=i)) for i, step in enumerate(steps)]
    released = await store.create_run(
        run, RunSeed(caps=caps or {"a": 1, "b": 1}, deliveries=deliveries, **seed)
    )
    return run.run_id, deliveries, list(released)


def ids(deliveries: Sequence[Delivery]) -> list[str]:
    return [d.delivery_id for d in deliveries]


def own_events(entries: Sequence[StreamEntry]) -> list[Event]:
    """The stream's events without the step-state notices a store may add itself."""
    return [e.event for e in entries if not isinstance(e.event, StepStateChanged)]


def waiter(run_id: str, parent: Delivery, waiter_id: str = "w1", **fields: Any) -> Waiter:
    values: dict[str, Any] = {
        "waiter_id": waiter_id,
        "event_type": Answer,
        "requirements": {"text": "yes"},
        "delivery": parent,
        "timeout_s": 30.0,
        **fields,
    }
    return Waiter(**values)


def resolving(w: Waiter, event: Event, delivery_id: str | None = None) -> tuple[str, Delivery]:
    """What the executor commits to resolve ``w`` with ``event``: the step's re-run."""
    redelivery = dataclasses.replace(
        w.delivery,
        delivery_id=delivery_id or new_id("redelivery"),
        resolved={**w.delivery.resolved, w.waiter_id: event},
    )
    return w.waiter_id, redelivery


COMPLETED = RunOutcome(
    RunStatus.COMPLETED, result=StopEvent(result="done"), terminal_event=StopEvent(result="done")
)


# --- runs --------------------------------------------------------------------------


async def test_get_run_returns_the_record_as_created(store: Store) -> None:
    run = record(deadline=time.time() + 60, timeout_s=60.0, hitl=True)
    await store.create_run(run, RunSeed(caps={}))

    assert await store.get_run(run.run_id) == run
    assert await store.get_run(new_id()) is None


async def test_creating_a_run_twice_raises_run_exists_and_changes_nothing(store: Store) -> None:
    run_id, seeds, _ = await start_run(store, "a")

    with pytest.raises(RunExistsError) as raised:
        await store.create_run(
            record(run_id, workflow="other"),
            RunSeed(caps={"a": 1}, deliveries=[delivery(run_id, "a")]),
        )

    assert raised.value.run_id == run_id
    stored = await store.get_run(run_id)
    assert stored is not None and stored.workflow == "contract"
    snapshot = await store.snapshot(run_id)
    assert snapshot is not None
    assert ids(snapshot.in_progress) == ids(seeds)
    assert list(snapshot.queued) == []


async def test_seed_deliveries_are_released_up_to_each_steps_cap(store: Store) -> None:
    run_id, seeds, released = await start_run(store, "a", "a", "a", "b", "b", caps={"a": 2, "b": 1})
    a1, a2, a3, b1, b2 = seeds

    assert ids(released) == ids([a1, a2, b1])
    snapshot = await store.snapshot(run_id)
    assert snapshot is not None
    assert sorted(ids(snapshot.in_progress)) == sorted(ids([a1, a2, b1]))
    assert sorted(ids(snapshot.queued)) == sorted(ids([a3, b2]))


async def test_deliveries_come_back_as_they_were_stored(store: Store) -> None:
    run = record()
    stored = dataclasses.replace(
        delivery(run.run_id, "a", Ping(n=7)),
        attempt=2,
        first_attempt_at=1000.5,
        last_error=ErrorInfo("builtins.ValueError", "boom", step="a", traceback="tb"),
        last_failed_at=1001.25,
        resolved={"w0": Answer(text="yes"), "w1": None},
        recoveries={"handler": 1},
    )
    queued = delivery(run.run_id, "a", Pong(n=8))

    released = await store.create_run(run, RunSeed(caps={"a": 1}, deliveries=[stored, queued]))
    assert list(released) == [stored]
    result = await store.commit(run.run_id, Commit(delivery=stored))
    assert list(result.released) == [queued]


async def test_the_seed_state_becomes_the_runs_state(store: Store) -> None:
    run_id, _, _ = await start_run(store, state='{"count": 1}')

    state = await store.load_state(run_id)
    assert state.blob == '{"count": 1}'
    assert state.version > 0
    assert await store.save_state(run_id, '{"count": 2}', state.version) is SaveStatus.SAVED


async def test_list_runs_filters_by_workflow_and_status(store: Store) -> None:
    first = record(workflow="wf-one")
    second = record(workflow="wf-one")
    third = record(workflow="wf-two")
    for run in (first, second, third):
        await store.create_run(run, RunSeed(caps={}))
    await store.finish_run(second.run_id, COMPLETED)

    def run_ids(records: Sequence[RunRecord]) -> set[str]:
        return {r.run_id for r in records}

    everything = {first.run_id, second.run_id, third.run_id}
    assert run_ids(await store.list_runs()) == everything
    assert run_ids(await store.list_runs(workflow="wf-one")) == {first.run_id, second.run_id}
    assert run_ids(await store.list_runs(status=RunStatus.RUNNING)) == {
        first.run_id,
        third.run_id,
    }
    assert run_ids(await store.list_runs(workflow="wf-one", status=RunStatus.COMPLETED)) == {
        second.run_id
    }
    assert run_ids(await store.list_runs(workflow="nothing")) == set()


# --- finishing ---------------------------------------------------------------------


async def test_finish_run_ends_a_run_only_once(store: Store) -> None:
    run_id, _, _ = await start_run(store, "a")
    error = ErrorInfo("builtins.ValueError", "boom", step="a")

    assert await store.finish_run(run_id, RunOutcome(RunStatus.FAILED, error=error)) is True
    assert await store.finish_run(run_id, RunOutcome(RunStatus.CANCELLED)) is False

    run = await store.get_run(run_id)
    assert run is not None
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert (run.error.type_name, run.error.message, run.error.step) == (
        "builtins.ValueError",
        "boom",
        "a",
    )
    assert await store.finish_run(new_id(), COMPLETED) is False


async def test_a_commit_with_an_outcome_finishes_the_run(store: Store) -> None:
    run_id, (a1, _a2), _ = await start_run(store, "a", "a")

    result = await store.commit(run_id, Commit(delivery=a1, stream=[Pong(n=1)], outcome=COMPLETED))

    assert result.committed
    assert result.status is RunStatus.COMPLETED
    run = await store.get_run(run_id)
    assert run is not None
    assert run.status is RunStatus.COMPLETED
    assert run.result == StopEvent(result="done")
    assert run.result is not None and run.result.result == "done"
    entries = await store.read_stream(run_id, -1, 0)
    assert own_events(entries) == [Pong(n=1), StopEvent(result="done")]
    assert entries[-1].event == StopEvent(result="done"), "the terminal event comes last"


async def test_commits_are_refused_once_the_run_has_finished(store: Store) -> None:
    run_id, (a1, a2), _ = await start_run(store, "a", "a")
    await store.commit(run_id, Commit(delivery=a1, outcome=COMPLETED))

    late = await store.commit(
        run_id, Commit(delivery=a2, routed=[delivery(run_id, "b")], stream=[Pong()])
    )

    assert not late.committed
    assert list(late.released) == []
    assert late.status is RunStatus.COMPLETED
    assert await store.finish_run(run_id, RunOutcome(RunStatus.FAILED)) is False
    assert own_events(await store.read_stream(run_id, -1, 0)) == [StopEvent(result="done")]


async def test_wait_finished_returns_the_record_once_the_run_ends(store: Store) -> None:
    run_id, _, _ = await start_run(store, "a")
    waiting = asyncio.create_task(store.wait_finished(run_id, 10))
    await asyncio.sleep(SETTLE_S)
    assert not waiting.done()

    await store.finish_run(run_id, COMPLETED)

    finished = await asyncio.wait_for(waiting, PROMPT_S)
    assert finished is not None
    assert finished.run_id == run_id
    assert finished.status is RunStatus.COMPLETED
    again = await asyncio.wait_for(store.wait_finished(run_id, 10), PROMPT_S)
    assert again is not None and again.status is RunStatus.COMPLETED


async def test_wait_finished_returns_none_when_the_timeout_passes(store: Store) -> None:
    run_id, _, _ = await start_run(store, "a")

    started = time.monotonic()
    assert await store.wait_finished(run_id, 0.3) is None
    assert time.monotonic() - started >= 0.25


# --- begin -------------------------------------------------------------------------


async def test_begin_runs_a_new_delivery_of_a_live_run(store: Store) -> None:
    run_id, (a1,), _ = await start_run(store, "a")

    begin = await store.begin(a1)

    assert begin.status is BeginStatus.RUN
    assert begin.run is not None and begin.run.run_id == run_id


async def test_begin_reports_a_committed_delivery_as_duplicate(store: Store) -> None:
    run_id, (a1,), _ = await start_run(store, "a")
    await store.commit(run_id, Commit(delivery=a1, routed=[delivery(run_id, "b")]))

    assert (await store.begin(a1)).status is BeginStatus.DUPLICATE


async def test_begin_reports_a_finished_run(store: Store) -> None:
    run_id, (a1,), _ = await start_run(store, "a")
    await store.finish_run(run_id, RunOutcome(RunStatus.CANCELLED))

    begin = await store.begin(a1)

    assert begin.status is BeginStatus.FINISHED
    assert begin.run is not None and begin.run.status is RunStatus.CANCELLED


async def test_begin_reports_an_unknown_run_as_missing(store: Store) -> None:
    assert (await store.begin(delivery(new_id()))).status is BeginStatus.MISSING


async def test_begin_reports_a_run_past_its_deadline_as_expired(store: Store) -> None:
    run = record(deadline=time.time() - 1, timeout_s=1.0)
    run_id, (a1,), _ = await start_run(store, "a", run=run)

    begin = await store.begin(a1)

    assert begin.status is BeginStatus.EXPIRED
    assert begin.run is not None and begin.run.run_id == run_id, "the executor expires begin.run"


async def test_a_commit_to_an_unknown_run_commits_nothing(store: Store) -> None:
    result = await store.commit(new_id(), Commit(delivery=None, routed=[delivery(new_id())]))

    assert not result.committed
    assert list(result.released) == []


# --- commits and the caps ----------------------------------------------------------


async def test_a_commit_is_applied_once_per_delivery_id(store: Store) -> None:
    run_id, (a1, a2), _ = await start_run(store, "a", "a")
    b1 = delivery(run_id, "b", Pong(n=1), delivery_id=f"{a1.delivery_id}/b")

    first = await store.commit(run_id, Commit(delivery=a1, routed=[b1], stream=[Pong(n=1)]))
    # a redelivered message executes a1 again: same id, same derived children
    second = await store.commit(run_id, Commit(delivery=a1, routed=[b1], stream=[Pong(n=1)]))

    assert first.committed
    assert sorted(ids(first.released)) == sorted(ids([a2, b1]))
    assert not second.committed
    assert list(second.released) == []
    snapshot = await store.snapshot(run_id)
    assert snapshot is not None
    assert sorted(ids(snapshot.in_progress)) == sorted(ids([a2, b1]))
    assert list(snapshot.queued) == []
    assert own_events(await store.read_stream(run_id, -1, 0)) == [Pong(n=1)]


async def test_a_commit_frees_the_slot_for_the_next_queued_delivery_in_fifo_order(
    store: Store,
) -> None:
    run_id, seeds, released = await start_run(store, "a", "a", "a", "a", caps={"a": 1})
    assert ids(released) == ids(seeds[:1])

    for index, executed in enumerate(seeds):
        result = await store.commit(run_id, Commit(delivery=executed))
        expected_next = seeds[index + 1 : index + 2]
        assert ids(result.released) == ids(expected_next), f"after committing #{index}"
        assert result.in_flight == len(seeds) - index - 1


async def test_routed_deliveries_beyond_the_cap_are_queued(store: Store) -> None:
    run_id, (a1,), _ = await start_run(store, "a", caps={"a": 1, "b": 2})
    b1, b2, b3, b4 = (delivery(run_id, "b", Pong(n=i)) for i in range(4))

    result = await store.commit(run_id, Commit(delivery=a1, routed=[b1, b2, b3, b4]))

    assert ids(result.released) == ids([b1, b2])
    assert result.in_flight == 4
    snapshot = await store.snapshot(run_id)
    assert snapshot is not None
    assert ids(snapshot.queued) == ids([b3, b4])
    after_b1 = await store.commit(run_id, Commit(delivery=b1))
    assert ids(after_b1.released) == ids([b3])


async def test_a_freed_slot_goes_to_the_queue_before_new_routed_deliveries(store: Store) -> None:
    run_id, (a1, a2), _ = await start_run(store, "a", "a", caps={"a": 1})
    a3 = delivery(run_id, "a", Pong(n=3))

    result = await store.commit(run_id, Commit(delivery=a1, routed=[a3]))

    assert ids(result.released) == ids([a2])
    snapshot = await store.snapshot(run_id)
    assert snapshot is not None
    assert ids(snapshot.queued) == ids([a3])


async def test_an_external_commit_routes_without_freeing_a_slot(store: Store) -> None:
    run_id, _seeds, _ = await start_run(store, "a", caps={"a": 1})
    a2 = delivery(run_id, "a", Pong(n=2))

    result = await store.commit(run_id, Commit(delivery=None, routed=[a2]))

    assert result.committed
    assert list(result.released) == [], "a1 still holds the step's only slot"
    assert result.in_flight == 2


async def test_a_retry_keeps_the_slot_until_the_retried_delivery_commits(store: Store) -> None:
    run_id, (a1, a2), _ = await start_run(store, "a", "a", caps={"a": 1})
    retry = a1.retried(ErrorInfo("builtins.ValueError", "boom", step="a"), time.time())

    held = await store.commit(run_id, Commit(delivery=a1, retry=retry, retry_delay_s=5.0))

    assert held.committed
    assert list(held.released) == []
    assert held.in_flight == 2
    assert (await store.begin(retry)).status is BeginStatus.RUN
    freed = await store.commit(run_id, Commit(delivery=retry))
    assert ids(freed.released) == ids([a2])


async def test_commit_results_count_in_flight_deliveries_and_waiters(store: Store) -> None:
    run = record(hitl=True)
    run_id, (a1, a2, b1), released = await start_run(
        store, "a", "a", "b", caps={"a": 1, "b": 1}, run=run
    )
    assert ids(released) == ids([a1, b1])

    waiting = await store.commit(run_id, Commit(delivery=b1, waiter=waiter(run_id, b1)))
    assert (waiting.in_flight, waiting.waiters, waiting.hitl) == (2, 1, True)
    after_a1 = await store.commit(run_id, Commit(delivery=a1))
    assert (after_a1.in_flight, after_a1.waiters) == (1, 1)
    after_a2 = await store.commit(run_id, Commit(delivery=a2))
    assert (after_a2.in_flight, after_a2.waiters) == (0, 1)
    assert after_a2.status is RunStatus.RUNNING


# --- waiters -----------------------------------------------------------------------


async def test_a_commit_registers_a_waiter(store: Store) -> None:
    run_id, (a1,), _ = await start_run(store, "a")
    w = waiter(run_id, a1)
    question = InputRequiredEvent(prefix="continue?")

    result = await store.commit(run_id, Commit(delivery=a1, waiter=w, waiter_event=question))

    assert result.committed
    assert (result.in_flight, result.waiters) == (0, 1)
    assert list(await store.waiters(run_id)) == [w]
    assert own_events(await store.read_stream(run_id, -1, 0)) == [question]


async def test_registering_the_same_waiter_again_does_not_repeat_its_event(store: Store) -> None:
    run_id, (a1, a2), _ = await start_run(store, "a", "a", caps={"a": 2})
    question = InputRequiredEvent(prefix="continue?")

    await store.commit(
        run_id, Commit(delivery=a1, waiter=waiter(run_id, a1), waiter_event=question)
    )
    await store.commit(
        run_id, Commit(delivery=a2, waiter=waiter(run_id, a2), waiter_event=question)
    )

    assert len(await store.waiters(run_id)) == 1
    assert own_events(await store.read_stream(run_id, -1, 0)) == [question]


async def test_resolving_a_waiter_releases_the_steps_rerun(store: Store) -> None:
    run_id, (a1,), _ = await start_run(store, "a")
    w = waiter(run_id, a1)
    await store.commit(run_id, Commit(delivery=a1, waiter=w))
    waiter_id, redelivery = resolving(w, Answer(text="yes"))

    result = await store.commit(run_id, Commit(delivery=None, resolved=[(waiter_id, redelivery)]))

    assert result.committed
    assert list(result.released) == [redelivery]
    assert result.released[0].resolved == {"w1": Answer(text="yes")}
    assert (result.in_flight, result.waiters) == (1, 0)
    assert list(await store.waiters(run_id)) == []
    assert (await store.begin(redelivery)).status is BeginStatus.RUN


async def test_racing_commits_resolve_a_waiter_only_once(store: Store) -> None:
    run_id, (a1,), _ = await start_run(store, "a", caps={"a": 4})
    w = waiter(run_id, a1)
    await store.commit(run_id, Commit(delivery=a1, waiter=w))
    # each sender derives the re-run's id from its own event: the ids differ
    commits = [Commit(delivery=None, resolved=[resolving(w, Answer(text="yes"))]) for _ in range(4)]

    results = await asyncio.gather(*(store.commit(run_id, c) for c in commits))

    released = [d for r in results for d in r.released]
    assert len(released) == 1, f"the waiter was resolved {len(released)} times"
    assert list(await store.waiters(run_id)) == []
    snapshot = await store.snapshot(run_id)
    assert snapshot is not None
    assert ids(snapshot.in_progress) == ids(released)


async def test_expire_waiter_releases_the_rerun_with_none_for_that_waiter(store: Store) -> None:
    run_id, (a1,), _ = await start_run(store, "a")
    earlier = {"w0": Answer(text="first")}
    parent = dataclasses.replace(a1, resolved=earlier)
    await store.commit(run_id, Commit(delivery=a1, waiter=waiter(run_id, parent)))

    result = await store.expire_waiter(run_id, "w1")

    assert result.committed
    assert len(result.released) == 1
    rerun = result.released[0]
    assert (rerun.step, rerun.event) == (a1.step, a1.event)
    assert rerun.resolved == {"w0": Answer(text="first"), "w1": None}
    assert rerun.delivery_id != a1.delivery_id
    assert (await store.begin(rerun)).status is BeginStatus.RUN, "the re-run is no duplicate"
    assert (result.in_flight, result.waiters) == (1, 0)

    again = await store.expire_waiter(run_id, "w1")
    assert not again.committed
    assert list(again.released) == []


async def test_expire_waiter_does_nothing_once_the_waiter_was_resolved(store: Store) -> None:
    run_id, (a1,), _ = await start_run(store, "a")
    w = waiter(run_id, a1)
    await store.commit(run_id, Commit(delivery=a1, waiter=w))
    await store.commit(run_id, Commit(delivery=None, resolved=[resolving(w, Answer(text="yes"))]))

    result = await store.expire_waiter(run_id, "w1")

    assert not result.committed
    assert list(result.released) == []
    unknown = await store.expire_waiter(run_id, "never-registered")
    assert not unknown.committed
    assert list(unknown.released) == []


async def test_seeded_waiters_are_waiting(store: Store) -> None:
    run = record()
    parent = delivery(run.run_id, "a")
    w = waiter(run.run_id, parent)
    await store.create_run(run, RunSeed(caps={"a": 1}, waiters=[w]))

    assert list(await store.waiters(run.run_id)) == [w]
    result = await store.commit(
        run.run_id, Commit(delivery=None, resolved=[resolving(w, Answer(text="yes"))])
    )
    assert len(result.released) == 1


# --- collect -----------------------------------------------------------------------

KEY = ("a", "default")


async def test_collect_buffers_until_the_set_is_complete(store: Store) -> None:
    run_id, _, _ = await start_run(store)

    assert store.collect(run_id, KEY, "d1", Pong(n=1), [Ping, Pong]) is None
    assert store.collect(run_id, KEY, "d2", Ping(n=2), [Ping, Pong]) == [Ping(n=2), Pong(n=1)]


async def test_collect_counts_one_event_per_delivery(store: Store) -> None:
    run_id, _, _ = await start_run(store)

    assert store.collect(run_id, KEY, "d1", Item(n=1), [Item, Item]) is None
    # d1 executed again before the set completed: its event is already buffered
    assert store.collect(run_id, KEY, "d1", Item(n=1), [Item, Item]) is None
    assert store.collect(run_id, KEY, "d2", Item(n=2), [Item, Item]) == [Item(n=1), Item(n=2)]


async def test_collect_gives_the_completing_delivery_the_same_set_again(store: Store) -> None:
    run_id, _, _ = await start_run(store)
    store.collect(run_id, KEY, "d1", Pong(n=1), [Ping, Pong])
    complete = store.collect(run_id, KEY, "d2", Ping(n=2), [Ping, Pong])

    # d2 executed again (a redelivered message) before its commit
    assert store.collect(run_id, KEY, "d2", Ping(n=2), [Ping, Pong]) == complete


async def test_collect_does_not_buffer_again_an_event_already_in_a_set(store: Store) -> None:
    run_id, _, _ = await start_run(store)
    store.collect(run_id, KEY, "d1", Pong(n=1), [Ping, Pong])
    store.collect(run_id, KEY, "d2", Ping(n=2), [Ping, Pong])

    # d1 executed again after the set it belongs to was handed out
    assert store.collect(run_id, KEY, "d1", Pong(n=1), [Ping, Pong]) is None
    assert store.collect(run_id, KEY, "d3", Ping(n=3), [Ping, Pong]) is None, (
        "d1's event completed a second set: it was counted twice"
    )


async def test_collect_remembers_a_completed_set_per_key(store: Store) -> None:
    # one step execution may collect into several buffers (``buffer_id``)
    run_id, _, _ = await start_run(store)
    store.collect(run_id, ("a", "left"), "d1", Ping(n=1), [Ping, Pong])
    assert store.collect(run_id, ("a", "left"), "d2", Pong(n=2), [Ping, Pong]) is not None

    assert store.collect(run_id, ("a", "right"), "d2", Pong(n=2), [Ping, Pong]) is None


async def test_collect_buffers_are_separate_per_key(store: Store) -> None:
    run_id, _, _ = await start_run(store)

    assert store.collect(run_id, ("a", "left"), "d1", Ping(n=1), [Ping, Pong]) is None
    assert store.collect(run_id, ("a", "right"), "d2", Pong(n=2), [Ping, Pong]) is None
    assert store.collect(run_id, ("b", "left"), "d3", Pong(n=3), [Ping, Pong]) is None
    assert store.collect(run_id, ("a", "left"), "d4", Pong(n=4), [Ping, Pong]) == [
        Ping(n=1),
        Pong(n=4),
    ]


async def test_a_retried_delivery_gets_the_set_its_first_attempt_completed(store: Store) -> None:
    # the step completed the set, then failed; its retry (same lineage) must see it
    run_id, (first,), _ = await start_run(store, "a")
    store.collect(run_id, KEY, "other", Pong(n=1), [Ping, Pong])
    complete = store.collect(run_id, KEY, first.lineage_id, Ping(n=2), [Ping, Pong])
    error = ErrorInfo("builtins.RuntimeError", "flaky")
    retry = first.retried(error, time.time())
    await store.commit(run_id, Commit(delivery=first, retry=retry))

    assert retry.lineage_id == first.lineage_id
    assert store.collect(run_id, KEY, retry.lineage_id, Ping(n=2), [Ping, Pong]) == complete


async def test_a_snapshot_leaves_out_events_of_deliveries_still_in_progress(store: Store) -> None:
    # on resume an in-progress delivery re-runs and buffers its event again
    run_id, (a1, a2), _ = await start_run(store, "a", "a", caps={"a": 2})
    await store.commit(run_id, Commit(delivery=a1))
    store.collect(run_id, KEY, a1.lineage_id, Item(n=1), [Item, Item, Item])
    store.collect(run_id, KEY, a2.lineage_id, Item(n=2), [Item, Item, Item])

    snapshot = await store.snapshot(run_id)

    assert snapshot is not None
    assert [d.delivery_id for d in snapshot.in_progress] == [a2.delivery_id]
    assert dict(snapshot.buffers) == {KEY: [Item(n=1)]}


async def test_a_snapshot_returns_an_uncommitted_completed_set_to_its_buffer(store: Store) -> None:
    # the completing delivery is still running: its re-run must complete the set again
    run_id, (a1, a2), _ = await start_run(store, "a", "a", caps={"a": 2})
    await store.commit(run_id, Commit(delivery=a1))
    store.collect(run_id, KEY, a1.lineage_id, Item(n=1), [Item, Item])
    assert store.collect(run_id, KEY, a2.lineage_id, Item(n=2), [Item, Item]) is not None

    snapshot = await store.snapshot(run_id)

    assert snapshot is not None
    assert dict(snapshot.buffers) == {KEY: [Item(n=1)]}


async def test_exactly_one_of_many_concurrent_collectors_gets_the_set(store: Store) -> None:
    run_id, _, _ = await start_run(store)
    callers = 8
    expected = [Item] * callers

    for round_ in range(5):
        key = ("a", f"round-{round_}")
        barrier = threading.Barrier(callers)

        def collect(
            n: int, key: tuple[str, str] = key, barrier: threading.Barrier = barrier
        ) -> Any:
            barrier.wait()
            return store.collect(run_id, key, f"d{n}", Item(n=n), expected)

        with ThreadPoolExecutor(callers) as pool:
            results = list(pool.map(collect, range(callers)))

        complete = [r for r in results if r is not None]
        assert len(complete) == 1, f"round {round_}: {len(complete)} callers got the set"
        assert sorted(ev.n for ev in complete[0]) == list(range(callers))


async def test_seeded_buffers_take_part_in_collect(store: Store) -> None:
    run_id, _, _ = await start_run(store, buffers={KEY: [Ping(n=1)]})

    assert store.collect(run_id, KEY, "d1", Pong(n=2), [Ping, Pong]) == [Ping(n=1), Pong(n=2)]


# --- state -------------------------------------------------------------------------


async def test_an_unknown_state_is_empty_at_version_zero(store: Store) -> None:
    assert await store.load_state(new_id("state")) == StateSnapshot(version=0, blob=None)


async def test_save_state_is_a_compare_and_set_on_the_version(store: Store) -> None:
    key = new_id("state")

    assert await store.save_state(key, "one", 0) is SaveStatus.SAVED
    assert await store.load_state(key) == StateSnapshot(1, "one")
    assert await store.save_state(key, "stale", 0) is SaveStatus.CONFLICT
    assert await store.save_state(key, "two", 1) is SaveStatus.SAVED
    assert await store.load_state(key) == StateSnapshot(2, "two")
    assert await store.load_state(new_id("state")) == StateSnapshot(0, None)


async def test_racing_saves_from_the_same_version_succeed_once(store: Store) -> None:
    key = new_id("state")

    results = await asyncio.gather(*(store.save_state(key, f"v{i}", 0) for i in range(5)))

    assert sorted(r.value for r in results) == ["conflict"] * 4 + ["saved"]
    assert (await store.load_state(key)).version == 1


# --- the edit lock -----------------------------------------------------------------


async def test_a_lock_is_held_by_one_token_until_released(store: Store) -> None:
    key = new_id("state")

    assert await store.acquire_lock(key, "t1", lease_s=5, wait_s=0)
    assert not await store.acquire_lock(key, "t2", lease_s=5, wait_s=0)
    assert await store.renew_lock(key, "t1", lease_s=5)
    assert not await store.renew_lock(key, "t2", lease_s=5)
    await store.release_lock(key, "t2")  # not the holder: changes nothing
    assert not await store.acquire_lock(key, "t2", lease_s=5, wait_s=0)
    await store.release_lock(key, "t1")
    assert await store.acquire_lock(key, "t2", lease_s=5, wait_s=0)
    assert not await store.renew_lock(key, "t1", lease_s=5)


async def test_a_second_acquirer_waits_and_gets_the_lock_after_release(store: Store) -> None:
    key = new_id("state")
    await store.acquire_lock(key, "t1", lease_s=10, wait_s=0)
    second = asyncio.create_task(store.acquire_lock(key, "t2", lease_s=10, wait_s=5))
    await asyncio.sleep(SETTLE_S)
    assert not second.done()

    released_at = time.monotonic()
    await store.release_lock(key, "t1")

    assert await asyncio.wait_for(second, PROMPT_S)
    assert time.monotonic() - released_at < 1.0, "the waiter should wake on release"
    assert not await store.renew_lock(key, "t1", lease_s=5)


async def test_acquire_gives_up_after_wait_s(store: Store) -> None:
    key = new_id("state")
    await store.acquire_lock(key, "t1", lease_s=10, wait_s=0)

    started = time.monotonic()
    acquired = await store.acquire_lock(key, "t2", lease_s=10, wait_s=0.3)
    waited = time.monotonic() - started

    assert acquired is False
    assert 0.25 <= waited < 0.3 + PROMPT_S


async def test_a_lease_expires_by_itself(store: Store) -> None:
    key = new_id("state")
    await store.acquire_lock(key, "t1", lease_s=0.2, wait_s=0)

    started = time.monotonic()
    assert await store.acquire_lock(key, "t2", lease_s=10, wait_s=3)
    assert 0.15 <= time.monotonic() - started < PROMPT_S
    assert not await store.renew_lock(key, "t1", lease_s=5), "t1's lease is gone"


async def test_a_save_with_the_token_is_fenced_by_the_lock(store: Store) -> None:
    key = new_id("state")
    await store.acquire_lock(key, "t1", lease_s=0.2, wait_s=0)

    assert await store.save_state(key, "mine", 0, token="t1") is SaveStatus.SAVED
    await asyncio.sleep(0.4)  # the lease runs out while t1 still "edits"

    assert await store.save_state(key, "late", 1, token="t1") is SaveStatus.LOST
    assert await store.load_state(key) == StateSnapshot(1, "mine")


async def test_a_save_with_a_token_that_never_held_the_lock_is_lost(store: Store) -> None:
    key = new_id("state")
    assert await store.save_state(key, "x", 0, token="nobody") is SaveStatus.LOST
    await store.acquire_lock(key, "t1", lease_s=5, wait_s=0)
    assert await store.save_state(key, "x", 0, token="t2") is SaveStatus.LOST
    assert await store.load_state(key) == StateSnapshot(0, None)


async def test_a_save_without_a_token_is_refused_while_the_lock_is_held(store: Store) -> None:
    key = new_id("state")
    await store.acquire_lock(key, "t1", lease_s=5, wait_s=0)

    assert await store.save_state(key, "x", 0) is SaveStatus.LOCKED
    await store.release_lock(key, "t1")
    assert await store.save_state(key, "x", 0) is SaveStatus.SAVED


# --- the stream --------------------------------------------------------------------


async def test_stream_entries_are_numbered_from_zero_in_append_order(store: Store) -> None:
    run_id, _, _ = await start_run(store)

    assert await store.append_stream(run_id, [Ping(n=0), Ping(n=1)])
    assert await store.append_stream(run_id, [Ping(n=2)])

    entries = await store.read_stream(run_id, -1, 0)
    assert [(e.sequence, e.event) for e in entries] == [
        (0, Ping(n=0)),
        (1, Ping(n=1)),
        (2, Ping(n=2)),
    ]


async def test_read_stream_resumes_after_a_cursor(store: Store) -> None:
    run_id, _, _ = await start_run(store)
    await store.append_stream(run_id, [Ping(n=i) for i in range(4)])

    assert [e.sequence for e in await store.read_stream(run_id, 1, 0)] == [2, 3]
    assert [e.event for e in await store.read_stream(run_id, 2, 0)] == [Ping(n=3)]
    assert list(await store.read_stream(run_id, 3, 0)) == []


async def test_a_blocking_read_wakes_on_append(store: Store) -> None:
    run_id, _, _ = await start_run(store)
    reading = asyncio.create_task(store.read_stream(run_id, -1, 10))
    await asyncio.sleep(SETTLE_S)
    assert not reading.done()

    await store.append_stream(run_id, [Ping(n=1)])

    entries = await asyncio.wait_for(reading, PROMPT_S)
    assert [(e.sequence, e.event) for e in entries] == [(0, Ping(n=1))]


async def test_a_blocking_read_returns_nothing_when_its_timeout_passes(store: Store) -> None:
    run_id, _, _ = await start_run(store)

    started = time.monotonic()
    assert list(await store.read_stream(run_id, -1, 0.3)) == []
    assert time.monotonic() - started >= 0.25


async def test_every_commit_that_adds_entries_wakes_blocked_readers(store: Store) -> None:
    # Whatever entries a commit adds (a store may add its own step-state
    # notices), a reader blocked at the end of the stream must see them at once.
    run_id, (a1,), _ = await start_run(store, "a", caps={"a": 1, "b": 1})
    cursor = max((e.sequence for e in await store.read_stream(run_id, -1, 0)), default=-1)
    reading = asyncio.create_task(store.read_stream(run_id, cursor, 10))
    await asyncio.sleep(SETTLE_S)

    # b2 and b3 are queued behind b1: no stream events in the commit itself
    routed = [delivery(run_id, "b", Pong(n=i)) for i in range(3)]
    await store.commit(run_id, Commit(delivery=a1, routed=routed))
    added = await store.read_stream(run_id, cursor, 0)

    if not added:
        reading.cancel()
        pytest.skip("this store adds no entries of its own for queued deliveries")
    entries = await asyncio.wait_for(reading, PROMPT_S)
    assert entries[0] == added[0]


async def test_independent_readers_each_read_everything(store: Store) -> None:
    run_id, _, _ = await start_run(store)
    total = 6

    async def read_all() -> list[Event]:
        seen: list[Event] = []
        cursor = -1
        while len(seen) < total:
            entries = await store.read_stream(run_id, cursor, 5)
            assert entries, "a reader timed out before seeing every event"
            seen.extend(e.event for e in entries)
            cursor = entries[-1].sequence
        return seen

    readers = [asyncio.create_task(read_all()) for _ in range(2)]
    for n in range(total):
        await store.append_stream(run_id, [Ping(n=n)])
        await asyncio.sleep(0.01)

    results = await asyncio.wait_for(asyncio.gather(*readers), PROMPT_S * 2)
    assert results == [[Ping(n=n) for n in range(total)]] * 2


async def test_append_is_refused_once_the_run_has_finished(store: Store) -> None:
    run_id, _, _ = await start_run(store)
    await store.append_stream(run_id, [Ping(n=1)])
    await store.finish_run(run_id, COMPLETED)

    assert await store.append_stream(run_id, [Ping(n=2)]) is False
    entries = await store.read_stream(run_id, -1, 0)
    assert [e.event for e in entries] == [Ping(n=1), StopEvent(result="done")], (
        "the terminal event is the only one written after the end"
    )
    assert await store.append_stream(new_id(), [Ping(n=3)]) is False


async def test_a_read_after_the_end_returns_the_rest_then_nothing(store: Store) -> None:
    run_id, _, _ = await start_run(store)
    await store.append_stream(run_id, [Ping(n=0), Ping(n=1)])
    await store.finish_run(run_id, COMPLETED)

    rest = await store.read_stream(run_id, 0, 10)
    assert [(e.sequence, e.event) for e in rest] == [(1, Ping(n=1)), (2, StopEvent(result="done"))]
    started = time.monotonic()
    assert list(await store.read_stream(run_id, 2, 10)) == []
    assert time.monotonic() - started < PROMPT_S, "a finished stream must not block"


async def test_a_blocked_reader_wakes_when_the_run_finishes(store: Store) -> None:
    run_id, _, _ = await start_run(store)
    with_terminal = asyncio.create_task(store.read_stream(run_id, -1, 10))
    other_id, _, _ = await start_run(store)
    without_terminal = asyncio.create_task(store.read_stream(other_id, -1, 10))
    await asyncio.sleep(SETTLE_S)

    await store.finish_run(run_id, COMPLETED)
    await store.finish_run(other_id, RunOutcome(RunStatus.CANCELLED))

    entries = await asyncio.wait_for(with_terminal, PROMPT_S)
    assert [e.event for e in entries] == [StopEvent(result="done")]
    assert list(await asyncio.wait_for(without_terminal, PROMPT_S)) == []


async def test_reading_an_unknown_run_returns_nothing(store: Store) -> None:
    assert list(await asyncio.wait_for(store.read_stream(new_id(), -1, 10), PROMPT_S)) == []


# --- snapshot ----------------------------------------------------------------------


async def test_snapshot_holds_everything_about_the_run(store: Store) -> None:
    run = record()
    a1, a2 = delivery(run.run_id, "a", Ping(n=1)), delivery(run.run_id, "a", Ping(n=2))
    w = waiter(run.run_id, delivery(run.run_id, "b"))
    await store.create_run(
        run,
        RunSeed(
            caps={"a": 1},
            state='{"count": 1}',
            deliveries=[a1, a2],
            waiters=[w],
            buffers={KEY: [Pong(n=5)]},
        ),
    )

    snapshot = await store.snapshot(run.run_id)

    assert snapshot is not None
    assert snapshot.run == run
    assert snapshot.state.blob == '{"count": 1}'
    assert snapshot.state == await store.load_state(run.run_id)
    assert list(snapshot.in_progress) == [a1]
    assert list(snapshot.queued) == [a2]
    assert list(snapshot.waiters) == [w]
    assert {k: list(v) for k, v in snapshot.buffers.items()} == {KEY: [Pong(n=5)]}

    await store.commit(run.run_id, Commit(delivery=a1))
    after = await store.snapshot(run.run_id)
    assert after is not None
    assert (list(after.in_progress), list(after.queued)) == ([a2], [])


async def test_snapshot_of_an_unknown_run_is_none(store: Store) -> None:
    assert await store.snapshot(new_id()) is None
