"""What the Redis store promises beyond the Store port, checked against a real Redis.

The port's own promises are the contract suite's (``tests/contract``); here are
the Redis-specific ones: key layout and hash tags, expiry of finished runs,
blocking reads past redis-py's socket timeout, use from any event loop, error
translation without passwords, and a strict codec on stored data.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from stalkflow._sync import run_blocking
from stalkflow.adapters._redis_client import PLAIN_SCRIPTS, RUN_SCRIPTS, script_source
from stalkflow.adapters.redis_store import RedisStore
from stalkflow.core.codec import EventCodec
from stalkflow.core.deliveries import Delivery, Waiter
from stalkflow.core.runs import RunOutcome, RunRecord, RunStatus
from stalkflow.errors import BackendError, EventCodecError, StoreUnavailableError
from stalkflow.events import Event, StopEvent
from stalkflow.ports import Commit, RunSeed, SaveStatus

pytestmark = pytest.mark.redis

TTL_S = 120.0


class Ping(Event):
    n: int = 0


def run_record(**fields: Any) -> RunRecord:
    now = time.time()
    return RunRecord(f"run-{uuid.uuid4().hex[:10]}", "wf", created_at=now, updated_at=now, **fields)


def delivery(run_id: str, step: str = "a", n: int = 0) -> Delivery:
    return Delivery(run_id, "wf", step, Ping(n=n), f"d-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def prefix() -> str:
    return f"stalkflow-test:{uuid.uuid4().hex}:"


@pytest.fixture
def raw(
    redis_test_url: str, require_service: Callable[[str, Callable[[], object]], None], prefix: str
) -> Iterator[redis.Redis]:
    """A plain client on the test Redis; every key under ``prefix`` is deleted afterwards."""
    client = redis.Redis.from_url(redis_test_url, decode_responses=True, socket_timeout=2)
    require_service("Redis", client.ping)
    try:
        yield client
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
async def store(raw: redis.Redis, redis_test_url: str, prefix: str) -> AsyncIterator[RedisStore]:
    redis_store = RedisStore.from_url(redis_test_url, prefix=prefix, finished_ttl_s=TTL_S)
    try:
        yield redis_store
    finally:
        await redis_store.aclose()


async def busy_run(store: RedisStore) -> RunRecord:
    """A run that has touched every kind of key: queue, waiter, buffer, state, stream."""
    run = run_record()
    a1, a2, a3 = (delivery(run.run_id, n=n) for n in range(3))
    await store.create_run(run, RunSeed(caps={"a": 1}, state="{}", deliveries=[a1, a2, a3]))
    waiter = Waiter("w1", Ping, {}, a1, timeout_s=30.0)
    await store.commit(run.run_id, Commit(delivery=a1, waiter=waiter, stream=[Ping(n=9)]))
    store.collect(run.run_id, ("a", "default"), a2.delivery_id, Ping(), [Ping, Ping])
    assert await store.save_state(run.run_id, '{"x": 1}', 1) is SaveStatus.SAVED
    return run


# --- key layout --------------------------------------------------------------------


async def test_every_key_of_a_run_starts_with_the_prefix_and_shares_a_hash_slot(
    store: RedisStore, raw: redis.Redis, prefix: str
) -> None:
    run = await busy_run(store)
    await store.acquire_lock(run.run_id, "t1", lease_s=5, wait_s=0)

    keys = set(raw.scan_iter(match=f"{prefix}*"))
    run_keys = {key for key in keys if key.startswith(f"{prefix}{{{run.run_id}}}:")}

    # the listing, its counter, and the running runs that sweeps look at
    assert keys - run_keys == {
        f"{prefix}{{_index}}:runs",
        f"{prefix}{{_index}}:seq",
        f"{prefix}{{_index}}:active:{run.workflow}",
        f"{prefix}{{_index}}:workflows",
    }
    assert {key.rpartition(":")[2] for key in run_keys} >= {
        "run",
        "caps",
        "running",
        "queue",
        "queued",
        "inprog",
        "committed",
        "waiters",
        "stream",
        "state",
        "lock",
    }
    assert len({key_slot(key.encode()) for key in run_keys}) == 1


async def test_stream_ids_are_the_sequence_plus_one(store: RedisStore, raw: redis.Redis) -> None:
    run = run_record()
    await store.create_run(run, RunSeed(caps={}))
    await store.append_stream(run.run_id, [Ping(n=0), Ping(n=1)])

    ids = [entry_id for entry_id, _ in raw.xrange(f"{store._keys.run(run.run_id).stream}")]
    entries = await store.read_stream(run.run_id, -1, 0)

    assert ids == ["0-1", "0-2"]  # a Redis stream id cannot be 0-0
    assert [e.sequence for e in entries] == [0, 1]


# --- expiry ------------------------------------------------------------------------


async def test_a_running_runs_keys_never_expire(store: RedisStore, raw: redis.Redis) -> None:
    run = await busy_run(store)

    for key in raw.scan_iter(match=f"*{{{run.run_id}}}:*"):
        if not key.endswith(":lockq"):
            assert raw.ttl(key) == -1, key


async def test_a_finished_runs_keys_expire_after_the_ttl(
    store: RedisStore, raw: redis.Redis
) -> None:
    run = await busy_run(store)
    await store.finish_run(run.run_id, RunOutcome(RunStatus.COMPLETED, result=StopEvent()))

    keys = list(raw.scan_iter(match=f"*{{{run.run_id}}}:*"))
    assert keys
    for key in keys:
        assert 0 < raw.ttl(key) <= TTL_S, key
    finished = await store.get_run(run.run_id)
    assert finished is not None and finished.status is RunStatus.COMPLETED


async def test_keys_written_after_the_end_expire_with_the_run(
    store: RedisStore, raw: redis.Redis
) -> None:
    run = run_record()
    await store.create_run(run, RunSeed(caps={}))
    await store.finish_run(run.run_id, RunOutcome(RunStatus.CANCELLED))

    # a context is still usable after its run: its state, a late collect
    assert await store.save_state(run.run_id, "{}", 0) is SaveStatus.SAVED
    store.collect(run.run_id, ("a", "default"), "d1", Ping(), [Ping, Ping])

    for key in raw.scan_iter(match=f"*{{{run.run_id}}}:*"):
        assert 0 < raw.ttl(key) <= TTL_S, key


# --- waiting -----------------------------------------------------------------------


async def test_a_blocking_read_outlasts_redis_pys_socket_timeout(store: RedisStore) -> None:
    # redis-py's default socket timeout is 5 s (DESIGN.md, section 8)
    run = run_record()
    await store.create_run(run, RunSeed(caps={}))

    started = time.monotonic()
    assert list(await store.read_stream(run.run_id, -1, 6.0)) == []
    assert time.monotonic() - started >= 5.9


def test_the_store_works_from_any_event_loop(store: RedisStore) -> None:
    run = run_record()
    # no running loop here: run_blocking starts one; then a loop in another thread
    run_blocking(lambda: store.create_run(run, RunSeed(caps={})))
    found: list[Any] = []

    def in_thread() -> None:
        found.append(asyncio.run(store.get_run(run.run_id)))

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(10)

    async def inside_a_loop() -> Any:
        # a synchronous caller inside a running loop (Context.to_dict() in a step)
        return run_blocking(lambda: store.get_run(run.run_id))

    assert found == [run]
    assert asyncio.run(inside_a_loop()) == run


# --- errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "redis://:secret@127.0.0.1:1/0",
        "redis://someone:secret@127.0.0.1:1/0",
        "redis://:se%63ret@127.0.0.1:1/0",
    ],
)
async def test_an_unreachable_store_raises_store_unavailable_without_the_password(
    url: str,
) -> None:
    store = RedisStore.from_url(url)
    run = run_record()
    calls = [
        lambda: store.get_run("x"),
        lambda: store.create_run(run, RunSeed(caps={})),
        lambda: store.commit("x", Commit(delivery=None)),
        lambda: store.read_stream("x", -1, 1),
        lambda: store.acquire_lock("k", "t", 1, 1),
    ]
    try:
        for call in calls:
            with pytest.raises(StoreUnavailableError) as raised:
                await call()
            assert isinstance(raised.value, ConnectionError)
            assert isinstance(raised.value.__cause__, redis.exceptions.ConnectionError)
            for text in (str(raised.value), repr(raised.value), str(raised.value.__cause__)):
                assert "secret" not in text and "se%63ret" not in text
            assert "127.0.0.1:1" in str(raised.value)
        with pytest.raises(StoreUnavailableError) as sync_raised:
            store.collect("x", ("a", "default"), "d1", Ping(), [Ping])
        assert "secret" not in str(sync_raised.value)
        assert "secret" not in repr(store)
    finally:
        await store.aclose()


async def test_other_redis_errors_become_backend_errors(
    store: RedisStore, raw: redis.Redis
) -> None:
    run = run_record()
    await store.create_run(run, RunSeed(caps={}))
    raw.delete(store._keys.run(run.run_id).stream)
    raw.set(store._keys.run(run.run_id).stream, "not a stream")

    with pytest.raises(BackendError) as raised:
        await store.append_stream(run.run_id, [Ping()])
    assert not isinstance(raised.value, StoreUnavailableError)


# --- the codec on stored data --------------------------------------------------------


async def test_a_strict_store_never_decodes_an_unregistered_type(
    raw: redis.Redis, redis_test_url: str, prefix: str
) -> None:
    registered: dict[str, type[Event]] = {f"{__name__}.Ping": Ping}
    strict = RedisStore.from_url(
        redis_test_url, prefix=prefix, codec=EventCodec(lambda name: registered)
    )
    try:
        run = run_record()
        await strict.create_run(run, RunSeed(caps={}))
        await strict.append_stream(run.run_id, [Ping(n=1)])
        # someone with access to Redis plants an entry naming a module
        raw.xadd(
            strict._keys.run(run.run_id).stream,
            {"e": '{"type":"evil_planted_module.Payload","data":{}}'},
            id="0-2",
        )

        with pytest.raises(EventCodecError, match="evil_planted_module"):
            await strict.read_stream(run.run_id, -1, 0)
        assert "evil_planted_module" not in sys.modules
    finally:
        await strict.aclose()


def test_every_script_ships_with_the_package() -> None:
    for name in (*RUN_SCRIPTS, *PLAIN_SCRIPTS):
        assert "redis.call" in script_source(name), name
