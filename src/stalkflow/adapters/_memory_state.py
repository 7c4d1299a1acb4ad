"""The memory store's state blobs and their edit locks.

:class:`MemoryStates` keeps a versioned state blob per key (a run's state is
keyed by its run id) and a leased lock per key. A save is a compare-and-set on
the version, fenced by the lock: only the lock's holder may write while it is
held. A lock frees itself when its lease runs out; those waiting for it are
woken when it is released, and no later than its lease's end.

It shares the store's lock, so that a new run and its seed state appear together.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time

from stalkflow.adapters._waiting import new_waiter, wait, wake
from stalkflow.ports import SaveStatus, StateSnapshot


@dataclasses.dataclass
class _Lock:
    token: str
    expires_at: float


class MemoryStates:
    """State blobs and locks by key, under the store's ``mutex``."""

    def __init__(self, mutex: threading.Lock) -> None:
        self._mutex = mutex
        self._states: dict[str, StateSnapshot] = {}
        self._locks: dict[str, _Lock] = {}
        self._lock_waiters: dict[str, list[asyncio.Future[None]]] = {}

    def get(self, key: str) -> StateSnapshot:
        """The state under ``key``; version 0 and no blob if none was saved."""
        return self._states.get(key, StateSnapshot(0, None))

    def seed(self, key: str, blob: str) -> None:
        """A new run's state, version 1; the caller holds the mutex."""
        self._states[key] = StateSnapshot(version=1, blob=blob)

    def save(self, key: str, blob: str, expected_version: int, token: str | None) -> SaveStatus:
        with self._mutex:
            lock = self._live_lock(key)
            if token is not None and (lock is None or lock.token != token):
                return SaveStatus.LOST
            if token is None and lock is not None:
                return SaveStatus.LOCKED
            current = self._states.get(key, StateSnapshot(0, None))
            if current.version != expected_version:
                return SaveStatus.CONFLICT
            self._states[key] = StateSnapshot(current.version + 1, blob)
            return SaveStatus.SAVED

    def _live_lock(self, key: str) -> _Lock | None:
        lock = self._locks.get(key)
        if lock is not None and lock.expires_at <= time.monotonic():
            del self._locks[key]
            return None
        return lock

    async def acquire_lock(self, key: str, token: str, lease_s: float, wait_s: float) -> bool:
        deadline = time.monotonic() + wait_s
        while True:
            with self._mutex:
                lock = self._live_lock(key)
                if lock is None:
                    self._locks[key] = _Lock(token, time.monotonic() + lease_s)
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                future = new_waiter()
                self._lock_waiters.setdefault(key, []).append(future)
                # wake no later than the lease's end, when the lock frees itself
                timeout = min(remaining, max(0.0, lock.expires_at - time.monotonic()) + 0.001)
            await wait(future, timeout)

    def renew_lock(self, key: str, token: str, lease_s: float) -> bool:
        with self._mutex:
            lock = self._live_lock(key)
            if lock is None or lock.token != token:
                return False
            lock.expires_at = time.monotonic() + lease_s
            return True

    def release_lock(self, key: str, token: str) -> None:
        with self._mutex:
            lock = self._live_lock(key)
            if lock is not None and lock.token == token:
                del self._locks[key]
            wake(self._lock_waiters.get(key, []))
