"""The store or the broker goes away, for real: a private ``redis-server`` is killed
(SIGKILL) and restarted on the same port with its AOF (``appendfsync always``).

- store down at submit: the caller gets ``StoreUnavailableError``, its URL's
  password masked;
- store down mid-run: workers keep retrying, resume when it returns, and the run
  completes with the right result, every event routed once;
- broker down between a commit and the dispatch of what it released: the
  redelivered message re-sends it (the outbox), long before any sweep would;
- broker down at submit: the run is accepted (it lives in the store) and starts
  once the broker is back.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tests.conftest import redis_test_url
from tests.faults import fault_workflows as flows
from tests.faults._harness import (
    RESULT_TIMEOUT_S,
    RedisServer,
    distinct_deliveries,
    fault_cluster,
    fault_settings,
    hanging_event,
    retrying,
    wait_until,
)

from stalkflow import get_run
from stalkflow.distributed import build_engine
from stalkflow.errors import StalkflowError, StoreUnavailableError

pytestmark = [pytest.mark.redis, pytest.mark.celery]

THREADS = {"threads": ["--pool=threads", "--concurrency=4"]}


@pytest.fixture
def server(tmp_path: Path) -> RedisServer:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    try:
        yield server  # type: ignore[misc]
    finally:
        server.stop()


def test_submit_with_the_store_down_raises_store_unavailable(server: RedisServer) -> None:
    engine = build_engine(fault_settings(redis_url=server.url()))
    try:
        workflow = flows.Echo(engine=engine, timeout=30)
        server.kill()

        with pytest.raises(StoreUnavailableError) as submitting:
            workflow.submit(n=1)
        with pytest.raises(StoreUnavailableError) as reading:
            get_run("some-run", engine=engine)
    finally:
        engine.transport.close()  # type: ignore[attr-defined]

    for error in (submitting.value, reading.value):
        assert isinstance(error, StalkflowError)
        message = str(error)
        assert "unavailable" in message and f"127.0.0.1:{server.port}" in message
        assert server.password not in message
        assert "***" in message


def test_the_store_going_down_mid_run_delays_the_run_and_corrupts_nothing(
    tmp_path: Path, server: RedisServer
) -> None:
    settings = fault_settings(redis_url=server.url())
    with fault_cluster(tmp_path, THREADS, settings, probe_url=redis_test_url()) as cluster:
        handle = cluster.workflow(flows.Relay).submit(count=6, work_s=1.0)
        wait_until(lambda: len(cluster.probe(handle.run_id, "work")) >= 2, what="jobs under way")

        server.kill()  # mid-step: the steps under way cannot commit
        with pytest.raises(StoreUnavailableError):
            _ = handle.status
        cluster.wait_for_log("Backend error executing", timeout_s=20)
        time.sleep(2.0)
        server.start()  # back on the same port, with its AOF

        result = retrying(
            lambda: handle.get(timeout=RESULT_TIMEOUT_S), 60, (StoreUnavailableError,)
        )
        notes = cluster.probe(handle.run_id, "notes")
        logs = cluster.logs()
        status = handle.status

    assert result == list(range(6))
    assert status == "completed"
    routed = distinct_deliveries(notes)
    assert sorted(routed, key=int) == [str(i) for i in range(6)]
    assert all(len(ids) == 1 for ids in routed.values()), routed
    assert "is unavailable" in logs
    assert server.password not in logs


def test_a_commit_whose_dispatch_fails_is_sent_again_by_the_redelivered_message(
    tmp_path: Path, server: RedisServer
) -> None:
    # No sweep runs during the test (the first one, at start, finds nothing): the
    # run recovers through the outbox of the redelivered message alone.
    settings = fault_settings(
        broker_url=server.url(),
        dispatch_grace_s=300.0,
        sweep_interval_s=300.0,
        visibility_timeout_s=10.0,
    )
    workers = {"solo": ["--pool=solo"]}
    with fault_cluster(tmp_path, workers, settings) as cluster:
        handle = cluster.workflow(flows.Handoff).submit(count=3, work_s=1.0)
        hanging_event(handle)

        server.kill()  # the step commits, then cannot send its three jobs
        cluster.wait_for_log("Could not send 3 delivery(ies)", timeout_s=20)
        down_at = time.monotonic()
        time.sleep(1.0)
        server.start()

        result = handle.get(timeout=RESULT_TIMEOUT_S)
        recovered_s = time.monotonic() - down_at
        firsts = cluster.probe(handle.run_id, "first")
        notes = cluster.probe(handle.run_id, "notes")
        logs = cluster.logs()

    assert result == [0, 1, 2]
    assert recovered_s < 60, recovered_s
    assert len(firsts) == 1, "the committed step never ran again: its redelivery only re-sent"
    routed = distinct_deliveries(notes)
    assert all(len(ids) == 1 for ids in routed.values()) and len(routed) == 3, routed
    assert "that the commit of" in logs and "never started" in logs
    assert server.password not in logs


def test_a_run_submitted_while_the_broker_is_down_starts_when_it_returns(
    tmp_path: Path, server: RedisServer
) -> None:
    settings = fault_settings(broker_url=server.url(), visibility_timeout_s=10.0)
    with fault_cluster(tmp_path, THREADS, settings) as cluster:
        server.kill()

        started = time.monotonic()
        handle = cluster.workflow(flows.Echo).submit(n=21)  # accepted by the store
        assert handle.status == "running"
        time.sleep(1.0)
        server.start()

        result = handle.get(timeout=RESULT_TIMEOUT_S)
        elapsed_s = time.monotonic() - started
        logs = cluster.logs()

    assert result == {"n": 21, "double": 42}
    assert elapsed_s < 60
    # sent by a worker's sweep once the broker was back
    assert f"Re-sending run_id={handle.run_id} step=begin" in logs
    assert server.password not in logs
