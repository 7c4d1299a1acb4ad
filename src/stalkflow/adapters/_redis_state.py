"""The Redis store's state operations: versioned state blobs and their edit locks.

A state key (a run's is its run id) has a hash with the version and the blob,
a lock and a wake-up list. ``save_state`` is compare-and-set on the version;
with a lock token it commits only if that token still holds the lock (fencing),
without one it refuses while the lock is held. The lock is ``SET NX PX`` with a
random token and a lease; a release wakes one waiter blocked on the wake-up
list (``BLPOP``), and waiters also re-check on their own (``_LOCK_POLL_S``, or
when the holder's lease runs out).

:class:`RedisStateOps` is a part of :class:`~stalkflow.adapters.redis_store.RedisStore`.
"""

from __future__ import annotations

import time
from typing import cast

from stalkflow.adapters._redis_base import RedisStoreBase
from stalkflow.ports import SaveStatus, StateSnapshot

__all__ = ["RedisStateOps"]

# A lock waiter re-checks at least this often, even without a wake-up.
_LOCK_POLL_S = 0.5


class RedisStateOps(RedisStoreBase):
    """The store's state blobs (``load_state``, ``save_state``) and locks."""

    async def load_state(self, key: str) -> StateSnapshot:
        with self._errors():
            clients = await self._clients.for_loop()
            version, blob = await clients.quick.hmget(self._keys.state(key).state, ["v", "b"])
        return StateSnapshot(int(version or 0), cast("str | None", blob))

    async def save_state(
        self, key: str, blob: str, expected_version: int, token: str | None = None
    ) -> SaveStatus:
        keys = self._keys.state(key)
        args = [blob, expected_version, "0" if token is None else "1", token or ""]
        with self._errors():
            reply = await self._script("save_state", [keys.state, keys.lock, keys.run], args)
        return SaveStatus(reply)

    async def acquire_lock(self, key: str, token: str, lease_s: float, wait_s: float) -> bool:
        keys = self._keys.state(key)
        deadline = time.monotonic() + wait_s
        lease_ms = max(1, round(lease_s * 1000))
        while True:
            with self._errors():
                held_ms = await self._script("lock_acquire", [keys.lock], [token, lease_ms])
            if held_ms == -1:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # woken by a release, or when the holder's lease runs out at the latest
            lease_left = held_ms / 1000 + 0.001 if held_ms >= 0 else _LOCK_POLL_S
            wait = max(0.01, min(remaining, lease_left, _LOCK_POLL_S))
            with self._errors():
                clients = await self._clients.for_loop()
                await clients.blocking.blpop([keys.lock_wakeups], timeout=round(wait, 3))

    async def renew_lock(self, key: str, token: str, lease_s: float) -> bool:
        lease_ms = max(1, round(lease_s * 1000))
        lock = self._keys.state(key).lock
        with self._errors():
            return bool(await self._script("lock_renew", [lock], [token, lease_ms]))

    async def release_lock(self, key: str, token: str) -> None:
        keys = self._keys.state(key)
        with self._errors():
            await self._script("lock_release", [keys.lock, keys.lock_wakeups], [token])
