"""The ``Transport`` port's promises, held against every adapter (``transport`` fixture).

A transport carries each dispatched delivery to the executor bound with
``start()``, exactly once, after its delay. The executor may be called on
another thread and event loop than the test's (a Celery worker's), so the
recording executor below is thread-safe and wakes the test through its loop.

Tests marked ``only_adapters("local")`` check what the local transport
documents beyond the port (cancelling a finished run's work, running a run's
deliveries on the loop that started it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import uuid
from collections.abc import Callable

import pytest

from stalkflow.core.deliveries import Delivery, ErrorInfo
from stalkflow.events import HumanResponseEvent, StartEvent
from stalkflow.ports import Transport

MakeDelivery = Callable[..., Delivery]

# How long a test waits for an execution that must happen.
PROMPT_S = 5.0


@dataclasses.dataclass(frozen=True)
class Execution:
    delivery: Delivery
    at: float  # time.monotonic() when the executor was called
    loop: asyncio.AbstractEventLoop
    thread: int


class Recorder:
    """An executor that records every delivery of the test's own runs.

    Deliveries of other runs (a message left over from another test on a shared
    broker) are ignored. With ``hold`` set, each execution waits until it is set.
    """

    def __init__(self, *run_ids: str, hold: threading.Event | None = None) -> None:
        self.run_ids = set(run_ids)
        self.hold = hold
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._lock = threading.Lock()
        self._executions: list[Execution] = []
        self._finished: set[str] = set()

    async def __call__(self, delivery: Delivery) -> None:
        if delivery.run_id not in self.run_ids:
            return
        execution = Execution(
            delivery, time.monotonic(), asyncio.get_running_loop(), threading.get_ident()
        )
        self._record(lambda: self._executions.append(execution))
        if self.hold is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.hold.wait, PROMPT_S)
        self._record(lambda: self._finished.add(delivery.delivery_id))

    def _record(self, change: Callable[[], None]) -> None:
        with self._lock:
            change()
        self._loop.call_soon_threadsafe(self._changed.set)

    @property
    def executions(self) -> list[Execution]:
        with self._lock:
            return list(self._executions)

    def executed_ids(self) -> list[str]:
        return [e.delivery.delivery_id for e in self.executions]

    def finished_ids(self) -> set[str]:
        with self._lock:
            return set(self._finished)

    def of(self, delivery: Delivery) -> list[Execution]:
        return [e for e in self.executions if e.delivery.delivery_id == delivery.delivery_id]

    async def wait_until(self, condition: Callable[[], bool], timeout_s: float = PROMPT_S) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            self._changed.clear()
            if condition():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                return condition()

    async def wait_for(self, *deliveries: Delivery, timeout_s: float = PROMPT_S) -> None:
        wanted = {d.delivery_id for d in deliveries}
        done = await self.wait_until(lambda: wanted <= set(self.executed_ids()), timeout_s)
        missing = wanted - set(self.executed_ids())
        assert done, f"not executed within {timeout_s} s: {sorted(missing)}"


def new_run_id() -> str:
    return f"run-{uuid.uuid4().hex[:12]}"


# --- the port's promises -----------------------------------------------------------


async def test_every_dispatched_delivery_is_executed_exactly_once(
    transport: Transport, make_delivery: MakeDelivery
) -> None:
    runs = [new_run_id(), new_run_id()]
    recorder = Recorder(*runs)
    transport.start(recorder)
    batch = [make_delivery(runs[i % 2], "ab"[i % 2], StartEvent(index=i)) for i in range(15)]
    singles = [
        make_delivery(
            runs[0],
            "a",
            StartEvent(index=100 + i),
            attempt=2,
            last_error=ErrorInfo("builtins.ValueError", "boom", step="a"),
            resolved={"w1": HumanResponseEvent(response="yes"), "w2": None},
        )
        for i in range(5)
    ]

    await transport.dispatch(batch)
    for single in singles:
        await transport.dispatch([single])

    dispatched = batch + singles
    await recorder.wait_for(*dispatched)
    await asyncio.sleep(0.3)  # time for a duplicate to show up
    executed = recorder.executed_ids()
    assert sorted(executed) == sorted(d.delivery_id for d in dispatched), "each exactly once"
    by_id = {e.delivery.delivery_id: e.delivery for e in recorder.executions}
    for original in dispatched:
        assert by_id[original.delivery_id] == original, "a delivery arrives unchanged"


async def test_dispatch_returns_without_waiting_for_the_execution(
    transport: Transport, make_delivery: MakeDelivery
) -> None:
    run_id = new_run_id()
    hold = threading.Event()
    recorder = Recorder(run_id, hold=hold)
    transport.start(recorder)
    first = make_delivery(run_id, "a")

    try:
        await asyncio.wait_for(transport.dispatch([first]), PROMPT_S)
        await recorder.wait_for(first)
        assert first.delivery_id not in recorder.finished_ids()
    finally:
        hold.set()
    assert await recorder.wait_until(lambda: first.delivery_id in recorder.finished_ids())


async def test_a_delayed_delivery_runs_only_after_its_delay(
    transport: Transport, make_delivery: MakeDelivery
) -> None:
    run_id = new_run_id()
    recorder = Recorder(run_id)
    transport.start(recorder)
    now, later = make_delivery(run_id, "a"), make_delivery(run_id, "b")
    delay_s = 0.6

    dispatched_at = time.monotonic()
    await transport.dispatch([later], delay_s=delay_s)
    await transport.dispatch([now])

    await recorder.wait_for(now)
    await asyncio.sleep(max(0.0, dispatched_at + delay_s - 0.3 - time.monotonic()))
    assert recorder.of(later) == [], "the delayed delivery ran 0.3 s before its delay ended"
    await recorder.wait_for(later)
    (execution,) = recorder.of(later)
    assert execution.at - dispatched_at >= delay_s - 0.05


async def test_run_finished_of_an_unknown_run_is_harmless(
    transport: Transport, make_delivery: MakeDelivery
) -> None:
    run_id = new_run_id()
    recorder = Recorder(run_id)
    transport.start(recorder)

    transport.run_finished(new_run_id())

    delivery = make_delivery(run_id, "a")
    await transport.dispatch([delivery])
    await recorder.wait_for(delivery)


# --- behaviour of the local transport ------------------------------------------------


@pytest.mark.only_adapters("local", reason="the local transport drops a finished run's timers")
async def test_run_finished_drops_the_runs_pending_delayed_deliveries(
    transport: Transport, make_delivery: MakeDelivery
) -> None:
    finished, other = new_run_id(), new_run_id()
    recorder = Recorder(finished, other)
    transport.start(recorder)
    dropped, kept = make_delivery(finished, "a"), make_delivery(other, "a")

    await transport.dispatch([dropped], delay_s=0.3)
    await transport.dispatch([kept], delay_s=0.3)
    transport.run_finished(finished)

    await recorder.wait_for(kept)
    await asyncio.sleep(0.2)
    assert recorder.of(dropped) == []


@pytest.mark.only_adapters("local", reason="the local transport cancels a finished run's tasks")
async def test_run_finished_cancels_the_runs_executions_under_way(
    transport: Transport, make_delivery: MakeDelivery
) -> None:
    finished, other = new_run_id(), new_run_id()
    started: dict[str, asyncio.Event] = {finished: asyncio.Event(), other: asyncio.Event()}
    cancelled: set[str] = set()
    release = asyncio.Event()

    async def execute(delivery: Delivery) -> None:
        started[delivery.run_id].set()
        try:
            await release.wait()
        except asyncio.CancelledError:
            cancelled.add(delivery.run_id)
            raise

    transport.start(execute)
    await transport.dispatch([make_delivery(finished, "a"), make_delivery(other, "a")])
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started.values())), PROMPT_S)

    transport.run_finished(finished)
    await asyncio.sleep(0.1)

    assert cancelled == {finished}
    release.set()
    transport.run_finished(other)


@pytest.mark.only_adapters("local", reason="the local transport runs a run on its own loop")
async def test_a_dispatch_from_another_threads_loop_runs_on_the_runs_loop(
    transport: Transport, make_delivery: MakeDelivery
) -> None:
    run_id = new_run_id()
    recorder = Recorder(run_id)
    transport.start(recorder)
    first, second, delayed = (make_delivery(run_id, "a") for _ in range(3))
    await transport.dispatch([first])  # binds the run to this loop

    def from_another_thread() -> None:
        async def dispatch() -> None:
            await transport.dispatch([second])
            await transport.dispatch([delayed], delay_s=0.1)

        asyncio.run(dispatch())

    thread = threading.Thread(target=from_another_thread)
    thread.start()
    await asyncio.get_running_loop().run_in_executor(None, thread.join, PROMPT_S)

    await recorder.wait_for(first, second, delayed)
    loop = asyncio.get_running_loop()
    assert [e.loop is loop for e in recorder.executions] == [True, True, True]
