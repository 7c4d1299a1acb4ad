"""``edit_state()`` holders that die or freeze: leases expire, fenced writes never land.

The workers run with a lock lease of 1.5 s and a delivery lease of 2 s. A holder
killed inside its block frees the lock when its lease runs out, and its step runs
again elsewhere; a holder frozen (SIGSTOP) and thawed after its lease ran out
tries to write and is refused (``StateLockLostError``): the final state is
exactly what the survivors wrote.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from tests.conftest import redis_test_url, require_service
from tests.faults import fault_workflows as flows
from tests.faults._harness import (
    RESULT_TIMEOUT_S,
    FaultCluster,
    fault_cluster,
    hanging_event,
    wait_until,
)
from tests.integration._cluster import delete_keys, redis_ping

from stalkflow._sync import run_blocking
from stalkflow.adapters.redis_store import RedisStore
from stalkflow.context.state_codec import DictState, StateCodec
from stalkflow.context.state_store import LockSettings, StateStore
from stalkflow.errors import StateLockLostError

pytestmark = [pytest.mark.redis, pytest.mark.celery]

# One step at a time per process: the frozen or killed process holds writer 0 only,
# so every other write is a survivor's. (A process that dies with several steps
# under way has them re-run elsewhere, repeating the state writes they had made:
# step bodies are at-least-once, see docs/guarantees.md.)
WORKERS = {"a": ["--pool=solo"], "b": ["--pool=solo"]}
WRITERS, ROUNDS = 4, 5


def final_state(cluster: FaultCluster, run_id: str) -> dict[str, object]:
    snapshot = run_blocking(lambda: cluster.cluster.engine.store.load_state(run_id))
    codec: StateCodec[DictState] = StateCodec(DictState)
    return dict(codec.decode(snapshot.blob)._data)  # type: ignore[attr-defined]


def held_locks(cluster: FaultCluster) -> list[str]:
    client = cluster.redis()
    try:
        return list(client.scan_iter(match=f"{cluster.settings.prefix}*:lock"))
    finally:
        client.close()


def assert_survivors_wrote_everything(state: dict[str, object]) -> None:
    assert state["count"] == WRITERS * ROUNDS
    assert "zombie" not in state, "the dead holder's write landed"
    log = state["log"]
    assert isinstance(log, list) and len(log) == WRITERS * ROUNDS
    # writer 0 ran again from the top, as one delivery: each round written once
    rounds = Counter(entry.rsplit(":", 1)[0] for entry in log)
    assert set(rounds.values()) == {1}, rounds


def test_a_worker_killed_inside_edit_state_frees_the_lock_when_its_lease_expires(
    tmp_path: Path,
) -> None:
    with fault_cluster(tmp_path, WORKERS) as cluster:
        handle = cluster.workflow(flows.Locker).submit(writers=WRITERS, rounds=ROUNDS, hold_s=60)
        holder = hanging_event(handle)

        os.kill(holder.pid, signal.SIGKILL)  # dies holding the lock
        result = handle.get(timeout=RESULT_TIMEOUT_S)

        state = final_state(cluster, handle.run_id)
        locks = held_locks(cluster)

    assert result == state
    assert_survivors_wrote_everything(state)
    assert locks == []


def test_a_frozen_holder_that_wakes_after_its_lease_writes_nothing(tmp_path: Path) -> None:
    with fault_cluster(tmp_path, WORKERS) as cluster:
        handle = cluster.workflow(flows.Locker).submit(
            writers=WRITERS, rounds=ROUNDS, hold_s=8, wait_for_go=True
        )
        holder = hanging_event(handle)
        frozen_at = time.monotonic()
        os.kill(holder.pid, signal.SIGSTOP)  # a GC pause, a VM migration, a stuck disk
        try:
            # Its lock lease (1.5 s) and delivery lease (2 s) run out: the other
            # writers go on, and its step runs again in the other process.
            wait_until(
                lambda: final_state(cluster, handle.run_id).get("count") == WRITERS * ROUNDS,
                timeout_s=RESULT_TIMEOUT_S,
                what="the survivors' writes",
            )
            assert time.monotonic() - frozen_at < 8, "the others wrote while the holder was frozen"
        finally:
            os.kill(holder.pid, signal.SIGCONT)
        # Thawed, it resumes inside its block, the run still running, and writes: refused.
        logs = cluster.wait_for_log("expired before the block ended", timeout_s=20)
        handle.send_event(flows.Go(response="go"))
        result = handle.get(timeout=RESULT_TIMEOUT_S)

        state = final_state(cluster, handle.run_id)
        locks = held_locks(cluster)
        alive = all(worker.process.poll() is None for worker in cluster.workers)

    assert result == state
    assert_survivors_wrote_everything(state)
    assert "StateLockLostError" in logs
    assert locks == []
    assert alive


async def test_a_holder_whose_lease_expired_gets_state_lock_lost_and_writes_nothing() -> None:
    url = redis_test_url()
    require_service("Redis", redis_ping(url))
    prefix = f"stalkflow-faults-fence-{uuid.uuid4().hex[:8]}"
    store = RedisStore.from_url(url, prefix=prefix)
    codec: StateCodec[DictState] = StateCodec(DictState)
    locks = LockSettings(lease_s=0.3, wait_s=5.0)
    key = "fenced"
    slow: StateStore[DictState] = StateStore(store, key, codec, locks)
    await slow.set("count", 0)

    def survivor() -> None:
        # another process's loop: a client of its own
        async def increment() -> None:
            other = RedisStore.from_url(url, prefix=prefix)
            try:
                fast: StateStore[DictState] = StateStore(other, key, codec, locks)
                async with fast.edit_state() as state:
                    state["count"] = state["count"] + 1
                    state["survivor"] = True
            finally:
                await other.aclose()

        asyncio.run(increment())

    try:
        with pytest.raises(StateLockLostError, match="expired before the block ended"):
            async with slow.edit_state() as state:
                state["count"] = 100
                state["zombie"] = True
                time.sleep(0.6)  # stalls past its lease: its renewals cannot run
                thread = threading.Thread(target=survivor)
                thread.start()
                thread.join(10)
        final = await slow.get_state()
        assert dict(final._data) == {"count": 1, "survivor": True}  # type: ignore[attr-defined]
        # and the fenced store call itself: the token no longer holds the lock
        from stalkflow.ports import SaveStatus

        snapshot = await store.load_state(key)
        assert await store.save_state(key, "{}", snapshot.version, "stale-token") is SaveStatus.LOST
        assert (await store.load_state(key)).version == snapshot.version
    finally:
        await store.aclose()
        delete_keys(url, f"{prefix}*")
