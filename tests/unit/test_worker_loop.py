"""The worker's event loop: one per process, persistent, and made anew after a fork."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading

import pytest

from stalkflow.adapters._worker_loop import WorkerLoop


async def loop_id() -> int:
    return id(asyncio.get_running_loop())


def test_every_call_runs_on_the_same_loop_on_its_own_thread() -> None:
    loop = WorkerLoop()
    try:
        first, second = loop.run(loop_id()), loop.run(loop_id())

        async def thread_name() -> str:
            return threading.current_thread().name

        assert first == second
        assert loop.run(thread_name()) == "stalkflow-worker-loop"
    finally:
        loop.close()


def test_an_interrupted_wait_cancels_the_coroutine() -> None:
    loop = WorkerLoop()
    cancelled = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    try:
        with pytest.raises(TimeoutError):
            loop.run(slow(), timeout_s=0.05)
        assert cancelled.wait(2)
    finally:
        loop.close()


def _run_in_child(loop: WorkerLoop, results: multiprocessing.Queue[object]) -> None:
    results.put(loop.run(loop_id()))


def test_a_forked_process_gets_a_loop_of_its_own() -> None:
    loop = WorkerLoop()
    try:
        parent = loop.run(loop_id())  # the parent's loop thread does not survive a fork
        context = multiprocessing.get_context("fork")
        results: multiprocessing.Queue[object] = context.Queue()
        child = context.Process(target=_run_in_child, args=(loop, results))
        child.start()
        answer = results.get(timeout=10)
        child.join(10)

        assert child.exitcode == 0
        assert isinstance(answer, int)
        assert loop.run(loop_id()) == parent
    finally:
        loop.close()
