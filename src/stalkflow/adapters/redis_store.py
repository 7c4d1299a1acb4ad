"""The Redis Store: runs live in Redis, shared by every worker and client.

It keeps the same promises as :class:`~stalkflow.adapters.memory_store.MemoryStore`
(the contract suite in ``tests/contract`` holds both to them), with these
properties of its own:

- every operation that changes a run is one Lua script call, so it is atomic
  even with many workers committing at once: ``create_run``, ``begin``,
  ``commit``, ``finish_run``, ``expire_waiter``, ``collect``, ``append_stream``,
  ``save_state`` and the lock operations (scripts in ``adapters/lua``);
- the keys of a run share a hash tag (see :mod:`stalkflow.adapters.redis_keys`),
  so the scripts also run on Redis Cluster; a finished run's keys expire
  ``finished_ttl_s`` after it ends;
- the run's event stream is a Redis stream: any number of readers read it from
  their own cursor, and ``read_stream`` / ``wait_finished`` block in Redis
  (``XREAD BLOCK``), not by polling;
- values are JSON, written and read by an :class:`~stalkflow.core.codec.EventCodec`;
  pickle is never used. A worker passes the strict codec of its workflow
  registry, so that only registered event types are ever decoded; the default,
  :meth:`EventCodec.permissive`, is meant for tests and clients without a registry;
- every in-flight delivery has a deadline (``DeliveryPolicy``): ``begin``
  claims a delivery for one execution under a lease its executor renews
  (``heartbeat``); ``sweep`` hands out again whatever missed its deadline (a
  dead worker's claim, a message that never arrived, a retry kept here until
  due). Running runs are listed in an index of their own (``{_index}:active``,
  outside the runs' hash slots, so it is updated by separate calls) scored by
  when a sweep should next look at them: at least once a lease;
- redis-py errors surface as :class:`~stalkflow.errors.StoreUnavailableError`
  (connection, timeout) or :class:`~stalkflow.errors.BackendError`, and the
  password of the URL never appears in a message.

This module holds the runs, their execution and their event stream. The class
is assembled from parts, each one concern: the state blobs and locks
(``_redis_state``), the sweeps and the index of runs to sweep
(``_redis_sweep``), and what they all share (``_redis_base``: keys,
connections, errors, script calls). Script arguments are encoded by
``_redis_wire``, replies decoded by ``_redis_replies``.

Example:
    >>> store = RedisStore.from_url("redis://localhost:6379/0", prefix="myapp")
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from typing import Any, cast

from stalkflow.adapters._redis_base import DEFAULT_FINISHED_TTL_S
from stalkflow.adapters._redis_client import BLOCK_SLICE_S
from stalkflow.adapters._redis_replies import RECORD_FIELDS, as_list
from stalkflow.adapters._redis_state import RedisStateOps
from stalkflow.adapters._redis_sweep import RedisSweeps
from stalkflow.core.codec import EventCodec
from stalkflow.core.deliveries import Delivery, Waiter
from stalkflow.core.runs import RunOutcome, RunRecord, RunStatus, is_past_deadline
from stalkflow.errors import RunExistsError, RunNotFoundError
from stalkflow.events import Event
from stalkflow.ports import (
    Begin,
    BeginStatus,
    Commit,
    CommitResult,
    DeliveryPolicy,
    RunSeed,
    RunSnapshot,
    StreamEntry,
)

__all__ = ["RedisStore"]


class RedisStore(RedisSweeps, RedisStateOps):
    """A ``Store`` in Redis. Build it with :meth:`from_url`; close it with :meth:`aclose`."""

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "stalkflow",
        codec: EventCodec | None = None,
        finished_ttl_s: float = DEFAULT_FINISHED_TTL_S,
        policy: DeliveryPolicy | None = None,
    ) -> RedisStore:
        """A store on the Redis at ``url``, writing only keys that start with ``prefix``.

        Nothing connects until the first call. ``codec`` defaults to
        :meth:`EventCodec.permissive`; workers pass their registry's strict codec.
        ``policy`` sets leases, the dispatch grace and the start limit of deliveries.
        """
        return cls(url, prefix=prefix, codec=codec, finished_ttl_s=finished_ttl_s, policy=policy)

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r}, prefix={self._keys.prefix!r})"

    # --- runs -----------------------------------------------------------------------

    async def create_run(self, run: RunRecord, seed: RunSeed) -> Sequence[Delivery]:
        keys = self._keys.run(run.run_id)
        spec = self._wire.create_spec(run, seed)
        # the sweeps' first look: within a lease, or when a waiter's stored timeout is due
        first_look_ms = min(
            [self._wire.lease_ms]
            + [
                max(0, round(w.timeout_s * 1000))
                for w in seed.waiters
                if w.waiter_id in seed.timeouts_in_store and w.timeout_s is not None
            ]
        )
        with self._errors():
            # The indexes are outside the run's hash slot, so they are written apart,
            # first: a run missing from them would never be swept; an index entry
            # whose run was never created is dropped by the next listing or sweep.
            await self._script(
                "index_add",
                [
                    self._keys.index,
                    self._keys.index_seq,
                    self._keys.active(run.workflow),
                    self._keys.workflows,
                ],
                [run.run_id, first_look_ms, run.workflow],
            )
            reply = as_list(await self._script("create_run", keys, [spec]))
            if reply[0] == "exists":
                raise RunExistsError(
                    f"Workflow run with run_id '{run.run_id}' already exists.", run_id=run.run_id
                )
        return self._replies.released(reply[1], seed.deliveries)

    async def get_run(self, run_id: str) -> RunRecord | None:
        with self._errors():
            clients = await self._clients.for_loop()
            fields = await clients.quick.hmget(self._keys.run(run_id).run, RECORD_FIELDS)
        return None if fields[0] is None else self._replies.record(fields)

    async def list_runs(
        self, *, workflow: str | None = None, status: RunStatus | None = None
    ) -> Sequence[RunRecord]:
        with self._errors():
            clients = await self._clients.for_loop()
            run_ids = cast(list[str], await clients.quick.zrange(self._keys.index, 0, -1))
            pipe = clients.quick.pipeline(transaction=False)
            for run_id in run_ids:
                pipe.hmget(self._keys.run(run_id).run, RECORD_FIELDS)
            rows = await pipe.execute()
            gone = [run_id for run_id, row in zip(run_ids, rows, strict=True) if row[0] is None]
            if gone:  # expired with their run's TTL
                await clients.quick.zrem(self._keys.index, *gone)
        records = [self._replies.record(row) for row in rows if row[0] is not None]
        return [
            r
            for r in records
            if (workflow is None or r.workflow == workflow)
            and (status is None or r.status == status)
        ]

    async def finish_run(self, run_id: str, outcome: RunOutcome) -> bool:
        spec = self._wire.dumps(self._wire.finish(outcome))
        with self._errors():
            return bool(await self._script("finish_run", self._keys.run(run_id), [spec]))

    async def wait_finished(self, run_id: str, timeout_s: float | None) -> RunRecord | None:
        """The finished record; waits on the loop's one subscription to run ends.

        Checked again at least every ``BLOCK_SLICE_S``, should a message be lost.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        key = self._keys.run(run_id).run
        with self._errors():
            clients = await self._clients.for_loop()
            watcher = clients.finishes(self._keys.finished_channel)
        while True:
            with self._errors():
                woken = await watcher.watch(key)  # before the check: no end is missed
            try:
                run = await self.get_run(run_id)
                if run is None or run.finished:
                    return run
                remaining = BLOCK_SLICE_S if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    return None
                await asyncio.wait([woken], timeout=min(remaining, BLOCK_SLICE_S))
            finally:
                watcher.forget(key, woken)

    async def _block(self, deadline: float | None, streams: dict[Any, Any]) -> bool:
        """Wait until one of ``streams`` has an entry after its id; False once past ``deadline``.

        Waits at most ``BLOCK_SLICE_S`` at a time, so callers re-check what they wait for.
        """
        remaining = BLOCK_SLICE_S if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            return False
        block_ms = max(1, int(min(remaining, BLOCK_SLICE_S) * 1000))
        with self._errors():
            clients = await self._clients.for_loop()
            await clients.blocking.xread(streams, count=1, block=block_ms)
        return True

    async def snapshot(self, run_id: str) -> RunSnapshot | None:
        with self._errors():
            reply = as_list(await self._script("snapshot", self._keys.run(run_id)))
        return None if reply[0] == "missing" else self._replies.snapshot(reply)

    # --- execution ------------------------------------------------------------------

    async def begin(
        self,
        delivery: Delivery,
        token: str | None = None,
        take_over: str | None = None,
        running: Event | None = None,
    ) -> Begin:
        keys = self._keys.run(delivery.run_id)
        policy = self._wire.policy
        args = [
            delivery.delivery_id,
            token or secrets.token_hex(8),
            self._wire.lease_ms,
            max(0, policy.max_deliveries),
            take_over or "",
            self._wire.grace_ms,
            "" if running is None else self._wire.event(running),
        ]
        with self._errors():
            reply = await self._script("begin", keys, args)
        begin = self._replies.begin(reply)
        if (
            begin.status is BeginStatus.RUN
            and begin.run is not None
            and is_past_deadline(begin.run, time.time())
        ):
            return Begin(BeginStatus.EXPIRED, begin.run)
        return begin

    async def heartbeat(self, run_id: str, delivery_id: str, token: str) -> bool:
        args = [delivery_id, token, self._wire.lease_ms]
        with self._errors():
            return bool(await self._script("heartbeat", self._keys.run(run_id), args))

    async def commit(self, run_id: str, commit: Commit) -> CommitResult:
        spec = self._wire.commit_spec(commit)
        with self._errors():
            reply = await self._script("commit", self._keys.run(run_id), [spec])
            if commit.retry is not None and commit.retry_in_store:
                # due before the sweeps would look at the run again, perhaps
                await self._mark_active(run_id, commit.retry.workflow, commit.retry_delay_s)
            waiter = commit.waiter
            if (
                commit.waiter_timeout_in_store
                and waiter is not None
                and waiter.timeout_s is not None
                and waiter.timeout_s < self._wire.policy.lease_s
            ):
                # sweeps look at every running run at least once a lease: only a
                # shorter timeout must ask for an earlier look
                await self._mark_active(run_id, waiter.delivery.workflow, waiter.timeout_s)
        known = [*commit.routed, *(d for _, d in commit.resolved)]
        return self._replies.commit_result(reply, known)

    async def expire_waiter(self, run_id: str, waiter_id: str) -> CommitResult:
        args = [waiter_id, self._wire.grace_ms]
        with self._errors():
            reply = await self._script("expire_waiter", self._keys.run(run_id), args)
        return self._replies.commit_result(reply)

    def collect(
        self,
        run_id: str,
        key: tuple[str, str],
        delivery_id: str,
        event: Event,
        expected: Sequence[type[Event]],
    ) -> list[Event] | None:
        args = self._wire.collect_args(key, delivery_id, event, expected)
        with self._errors():
            packed = self._keys.run(run_id).packed
            reply = as_list(self._clients.sync_call("collect", packed, args))
        if reply[0] == -1:
            raise RunNotFoundError(f"No workflow run with id {run_id!r}", run_id=run_id)
        return self._replies.collected(reply, expected)

    async def waiters(self, run_id: str) -> Sequence[Waiter]:
        keys = self._keys.run(run_id)
        with self._errors():
            clients = await self._clients.for_loop()
            pipe = clients.quick.pipeline(transaction=True)
            pipe.hgetall(keys.waiters)
            pipe.zrange(keys.waiter_order, 0, -1)
            by_id, order = await pipe.execute()
        return self._replies.waiters(by_id, order)

    # --- stream ---------------------------------------------------------------------

    async def append_stream(self, run_id: str, events: Sequence[Event]) -> bool:
        payloads = [self._wire.event(ev) for ev in events]
        with self._errors():
            reply = await self._script("append_stream", self._keys.run(run_id), payloads)
        return bool(reply)

    async def read_stream(
        self, run_id: str, after: int, timeout_s: float | None
    ) -> Sequence[StreamEntry]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        keys = self._keys.run(run_id)
        cursor = f"0-{after + 1}"  # the stream id of sequence ``after``
        while True:
            with self._errors():
                clients = await self._clients.for_loop()
                pipe = clients.quick.pipeline(transaction=True)
                pipe.hmget(keys.run, ["status", "workflow"])
                pipe.xrange(keys.stream, f"({cursor}", "+")
                (status, workflow), entries = await pipe.execute()
            if status is None:
                return []
            if entries:
                return [self._replies.stream_entry(workflow, entry) for entry in entries]
            if status != RunStatus.RUNNING.value:
                return []
            # a new entry, or the run's end, ends the wait
            if not await self._block(deadline, {keys.stream: cursor, keys.done: "0-0"}):
                return []
