"""The local Transport: each delivery runs as an asyncio task in this process.

A run's deliveries execute on the event loop that started it, as upstream's do,
so objects a step shares with its caller stay on their loop. When a run ends,
its executions still under way are cancelled (upstream does the same when a
step returns a StopEvent).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from stalkflow.core.deliveries import Delivery
from stalkflow.ports import Executor


class LocalTransport:
    """A ``Transport`` that executes deliveries as tasks on the run's event loop."""

    def __init__(self) -> None:
        self._execute: Executor | None = None
        self._loops: dict[str, asyncio.AbstractEventLoop] = {}
        self._tasks: dict[str, set[asyncio.Task[None]]] = {}
        self._timers: dict[str, set[asyncio.TimerHandle]] = {}

    def start(self, execute: Executor) -> None:
        self._execute = execute

    async def dispatch(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None:
        running = asyncio.get_running_loop()
        for delivery in deliveries:
            loop = self._loops.setdefault(delivery.run_id, running)
            if loop is running:
                self._schedule(loop, delivery, delay_s)
            else:
                loop.call_soon_threadsafe(self._schedule, loop, delivery, delay_s)

    def _schedule(
        self, loop: asyncio.AbstractEventLoop, delivery: Delivery, delay_s: float
    ) -> None:
        if delay_s <= 0:
            self._spawn(loop, delivery)
            return
        timers = self._timers.setdefault(delivery.run_id, set())
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                timers.discard(handle)
            self._spawn(loop, delivery)

        handle = loop.call_later(delay_s, fire)
        timers.add(handle)

    def _spawn(self, loop: asyncio.AbstractEventLoop, delivery: Delivery) -> None:
        assert self._execute is not None, "LocalTransport.start() was not called"
        task: asyncio.Task[None] = loop.create_task(_run(self._execute, delivery))
        tasks = self._tasks.setdefault(delivery.run_id, set())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def run_finished(self, run_id: str) -> None:
        loop = self._loops.pop(run_id, None)
        for handle in self._timers.pop(run_id, set()):
            handle.cancel()
        tasks = self._tasks.pop(run_id, set())
        if loop is None or not tasks:
            return
        try:
            current = asyncio.current_task()
        except RuntimeError:
            current = None
        for task in tasks:
            if task is not current:
                loop.call_soon_threadsafe(task.cancel)


async def _run(execute: Executor, delivery: Delivery) -> None:
    await execute(delivery)
