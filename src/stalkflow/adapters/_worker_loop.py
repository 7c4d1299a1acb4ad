"""One persistent asyncio event loop per process, on a thread of its own.

A Celery task body is synchronous and runs on a pool's thread (the main thread
with ``--pool=solo`` and prefork, one of several with ``--pool=threads``). Steps
are coroutines, and the store's async connections belong to the loop that made
them, so every execution in a process goes to one loop that lives as long as
the process: made on first use, after the pool forked, and made again if the
process is a fork of the one that made it (a loop thread does not survive a
fork).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class WorkerLoop:
    """A lazily started event loop thread, owned by this process.

    Example:
        >>> async def answer() -> int:
        ...     return 42
        >>> loop = WorkerLoop()
        >>> loop.run(answer())
        42
        >>> loop.close()
    """

    def __init__(self, name: str = "stalkflow-worker-loop") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        """This process's loop, started now if it is not running here yet."""
        with self._lock:
            pid = os.getpid()
            if self._loop is None or self._pid != pid or self._loop.is_closed():
                # After a fork the parent's loop object is inherited but its
                # thread is not: start afresh rather than wait on a dead thread.
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
                thread.start()
                self._loop, self._thread, self._pid = loop, thread, pid
            return self._loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop())

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for it from this (non-loop) thread.

        Anything that interrupts the wait (a soft time limit, a timeout) cancels
        the coroutine before it propagates.
        """
        future = self.submit(coro)
        try:
            return future.result(timeout_s)
        except BaseException:
            future.cancel()
            raise

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the loop and its thread, if this process started them."""
        with self._lock:
            loop, thread, pid = self._loop, self._thread, self._pid
            self._loop = self._thread = self._pid = None
        if loop is None or thread is None or pid != os.getpid() or loop.is_closed():
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout_s)
        if not thread.is_alive():
            loop.close()
