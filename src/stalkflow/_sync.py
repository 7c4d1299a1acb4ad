"""Calling the async ports from synchronous code (``Context.to_dict()``, ``submit``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="stalkflow-sync")


def run_blocking(factory: Callable[[], Awaitable[T]]) -> T:
    """Run the coroutine that ``factory`` makes to completion, from synchronous code.

    It runs with ``asyncio.run`` in this thread when no loop is running, or in a
    helper thread when one is (so a running loop is never re-entered or blocked
    on itself). Stores are written to be usable from any event loop, which makes
    this safe.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_as_coro(factory))
    return _pool.submit(asyncio.run, _as_coro(factory)).result()


async def _as_coro(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()
