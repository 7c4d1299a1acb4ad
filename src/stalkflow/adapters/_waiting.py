"""Futures that any event loop or thread can wait on and any thread can wake."""

from __future__ import annotations

import asyncio
import contextlib


def new_waiter() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


def wake(waiters: list[asyncio.Future[None]]) -> None:
    """Resolve every waiter from whichever thread or loop calls this."""
    pending, waiters[:] = list(waiters), []
    for future in pending:
        loop = future.get_loop()
        if loop.is_closed():
            continue
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def wait(future: asyncio.Future[None], timeout_s: float | None) -> bool:
    """Wait for ``future``; False if ``timeout_s`` passed first."""
    try:
        await asyncio.wait_for(asyncio.shield(future), timeout_s)
    except asyncio.TimeoutError:
        return False
    return True
