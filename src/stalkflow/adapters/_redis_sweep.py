"""The Redis store's sweeps: handing out again what missed its deadline.

Every in-flight delivery has a deadline (``DeliveryPolicy``); a sweep finds
what missed it (a dead worker's claim, a message that never arrived, a retry
kept in the store until due) and hands it out again. Running runs are listed
per workflow in an index of their own (``{_index}:active:<workflow>``, outside
the runs' hash slots, so it is updated by separate calls) scored by when a
sweep should next look at them: at least once a lease, sooner when a retry or a
waiter's timeout is due. Sweeps also prune the runs listing of runs that expired.

:class:`RedisSweeps` is a part of :class:`~stalkflow.adapters.redis_store.RedisStore`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

from stalkflow.adapters._redis_base import RedisStoreBase
from stalkflow.adapters._redis_replies import as_list
from stalkflow.ports import Recovered

__all__ = ["RedisSweeps"]

#: How many of the oldest listing entries each sweep checks for expired runs.
_PRUNE_BATCH = 200


class RedisSweeps(RedisStoreBase):
    """The store's ``sweep`` and ``redispatch_soon``, and the index of runs to sweep."""

    async def sweep(self, limit: int = 100, workflows: Sequence[str] = ()) -> Sequence[Recovered]:
        """Deliveries past their deadline, from the runs due for a look (see ``_redis_sweep``).

        ``workflows``: the workflows whose runs to sweep (a worker sweeps what it
        can execute); empty: every workflow's.
        """
        recovered: list[Recovered] = []
        with self._errors():
            clients = await self._clients.for_loop()
            await self._prune_index(clients.quick)
            names = list(workflows)
            if not names:
                names = sorted(cast(set[str], await clients.quick.smembers(self._keys.workflows)))
            for workflow in names:
                active = self._keys.active(workflow)
                run_ids = await clients.scripts["due_runs"](
                    keys=[active], args=[limit, self._wire.lease_ms]
                )
                for run_id in cast(list[str], run_ids):
                    args = [limit, self._wire.grace_ms, self._wire.lease_ms, json.dumps([workflow])]
                    keys = self._keys.run(run_id)
                    reply = as_list(await self._script("sweep_run", keys, args))
                    if reply[0] == "gone":
                        await clients.quick.zrem(active, run_id)
                        continue
                    await clients.quick.zadd(active, {run_id: int(reply[1])}, xx=True)
                    if reply[0] == "ok":
                        recovered.extend(self._replies.swept(run_id, reply[2]))
                    if len(recovered) >= limit:
                        return recovered
        return recovered

    async def _prune_index(self, client: Any) -> None:
        """Drop the oldest listing entries whose run has expired (sweeps do it as they go).

        The listing index is outside the runs' hash slots, so expiring a run cannot
        remove its entry; without this only ``list_runs`` would.
        """
        oldest = cast(list[str], await client.zrange(self._keys.index, 0, _PRUNE_BATCH - 1))
        if not oldest:
            return
        pipe = client.pipeline(transaction=False)
        for run_id in oldest:
            pipe.exists(self._keys.run(run_id).run)
        exists = await pipe.execute()
        gone = [run_id for run_id, found in zip(oldest, exists, strict=True) if not found]
        if gone:
            await client.zrem(self._keys.index, *gone)

    async def redispatch_soon(
        self, run_id: str, delivery_ids: Sequence[str], delay_s: float = 0.0
    ) -> None:
        if not delivery_ids:
            return
        delay_ms = max(0, round(delay_s * 1000))
        keys = self._keys.run(run_id)
        with self._errors():
            workflow = await self._script("redispatch_soon", keys, [delay_ms, *delivery_ids])
            if workflow:
                await self._mark_active(run_id, str(workflow), delay_s)

    async def _mark_active(self, run_id: str, workflow: str, in_s: float) -> None:
        clients = await self._clients.for_loop()
        await clients.scripts["mark_active"](
            keys=[self._keys.active(workflow)], args=[run_id, max(0, round(in_s * 1000))]
        )
