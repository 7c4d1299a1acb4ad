"""Worker processes that die, stop, or lose messages, for real.

Each test sends real signals to real ``celery worker`` processes (or purges a
real broker queue) and asserts what survived: the run completes with the right
result, and every event was routed exactly once (the ``note`` step records the
delivery id of each event it receives; one id per event means one routing).
The visibility timeout is an hour: recoveries come from stalkflow's delivery
leases and sweeps, not from the broker.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
from tests.faults import fault_workflows as flows
from tests.faults._harness import (
    RESULT_TIMEOUT_S,
    FaultCluster,
    distinct_deliveries,
    fault_cluster,
    fault_settings,
    hanging_event,
    pids_of,
    wait_until,
)

from stalkflow._sync import run_blocking
from stalkflow.core.deliveries import Delivery
from stalkflow.errors import DeliveryLimitError

pytestmark = [pytest.mark.redis, pytest.mark.celery]

TWO_SOLO = {"a": ["--pool=solo"], "b": ["--pool=solo"]}


def assert_routed_once(cluster: FaultCluster, run_id: str, count: int) -> None:
    """Every ``Finished`` event reached ``note`` as exactly one delivery."""
    routed = distinct_deliveries(cluster.probe(run_id, "notes"))
    assert sorted(routed, key=int) == [str(i) for i in range(count)]
    assert all(len(ids) == 1 for ids in routed.values()), routed


@pytest.mark.parametrize("hang_in", ["work", "start"])
def test_a_worker_killed_mid_step_is_replaced_and_nothing_is_routed_twice(
    tmp_path: Path, hang_in: str
) -> None:
    with fault_cluster(tmp_path, TWO_SOLO) as cluster:
        handle = cluster.workflow(flows.Relay).submit(
            count=6, work_s=0.05, hang_in=hang_in, hang_index=2
        )
        hanging = hanging_event(handle)
        victim = next(w for w in cluster.workers if w.process.pid == hanging.pid)

        killed_at = time.monotonic()
        os.kill(victim.process.pid, signal.SIGKILL)  # mid-step: no ack, no commit
        victim.process.wait(5)
        result = handle.get(timeout=RESULT_TIMEOUT_S)
        recovered_s = time.monotonic() - killed_at

        run_id = handle.run_id
        executions = cluster.probe(run_id, hang_in)
        logs = cluster.logs()
        assert_routed_once(cluster, run_id, 6)

    assert result == list(range(6))
    # the killed step ran again from the top, as the same delivery, in the survivor
    killed = [
        e for e in executions if e.startswith(f"{hanging.index if hang_in == 'work' else 'start'}:")
    ]
    assert len(killed) == 2, executions
    assert len({entry.split(":")[1] for entry in killed}) == 1, "one delivery, executed twice"
    first_pid, second_pid = pids_of(killed)
    assert first_pid == victim.process.pid
    assert second_pid != victim.process.pid
    # found by the survivor's sweep (lease 2 s), not the broker (visibility timeout 1 h)
    assert recovered_s < 20, recovered_s
    assert "no sign of life before its deadline" in logs


def test_a_lost_message_is_noticed_and_sent_again(use_pair: FaultCluster) -> None:
    pair = use_pair
    handle = pair.workflow(flows.Parked).submit()
    broker = redis.Redis.from_url(pair.settings.broker_url or "")
    try:
        # Its one message waits in a queue nobody consumes: lose it for real.
        wait_until(lambda: broker.llen(flows.PARKED_QUEUE) == 1, what="the parked message")
        assert broker.delete(flows.PARKED_QUEUE) == 1
        lost_at = time.monotonic()
        pair.app.control.add_consumer(flows.PARKED_QUEUE, reply=True)

        result = handle.get(timeout=RESULT_TIMEOUT_S)
        recovered_s = time.monotonic() - lost_at
    finally:
        pair.app.control.cancel_consumer(flows.PARKED_QUEUE, reply=True)
        broker.close()

    assert result == "unparked"
    assert len(pair.probe(handle.run_id, "parked")) == 1
    # re-sent once the dispatch grace (4 s) passed with the delivery never started
    assert 3.0 < recovered_s < 20, recovered_s
    pair.wait_for_log(f"run_id={handle.run_id} step=parked")


def test_sigterm_mid_run_finishes_the_step_under_way_and_the_run_completes(
    tmp_path: Path,
) -> None:
    with fault_cluster(tmp_path, TWO_SOLO) as cluster:
        handle = cluster.workflow(flows.Relay).submit(count=12, work_s=0.4)
        # both workers busy with jobs
        wait_until(
            lambda: len(set(pids_of(cluster.probe(handle.run_id, "work")))) == 2,
            what="both workers at work",
        )
        victim = cluster.workers[0]
        victim.terminate()  # SIGTERM: Celery's warm shutdown

        result = handle.get(timeout=RESULT_TIMEOUT_S)
        exit_code = victim.process.wait(20)
        work = cluster.probe(handle.run_id, "work")
        logs = victim.log_path.read_text()
        assert_routed_once(cluster, handle.run_id, 12)

    assert exit_code == 0, logs[-3000:]
    assert result == list(range(12))
    # graceful: the job the victim had under way finished there; nothing ran twice
    per_index = Counter(entry.split(":")[0] for entry in work)
    assert set(per_index.values()) == {1}, per_index
    assert victim.process.pid in pids_of(work)
    assert all(pid != victim.process.pid for pid in pids_of(work[-4:])), work


def test_a_step_that_kills_its_own_process_fails_after_max_deliveries(tmp_path: Path) -> None:
    settings = fault_settings(max_deliveries=3)
    workers = {"prefork": ["--pool=prefork", "--concurrency=1"]}
    with fault_cluster(tmp_path, workers, settings) as cluster:
        handle = cluster.workflow(flows.Suicidal).submit()

        with pytest.raises(DeliveryLimitError) as failed:
            handle.get(timeout=RESULT_TIMEOUT_S)
        attempts = cluster.probe(handle.run_id, "attempts")
        assert handle.status == "failed"
        main = cluster.workers[0]
        assert main.process.poll() is None, "the worker itself survives its children"
        # the worker serves other runs as before
        assert cluster.workflow(flows.Echo).submit(n=4).get(timeout=RESULT_TIMEOUT_S) == {
            "n": 4,
            "double": 8,
        }

    assert len(attempts) == 3, attempts
    assert len(set(pids_of(attempts))) == 3, "each attempt in a new pool child"
    message = str(failed.value)
    assert "'die'" in message and "started 3 time(s)" in message, message


def test_a_redelivered_message_of_a_committed_delivery_routes_nothing(
    use_pair: FaultCluster,
) -> None:
    pair = use_pair
    workflow = pair.workflow(flows.Relay)
    start = flows.RelayStart(count=4, work_s=0.0, hang_in="work", hang_index=3)
    handle = workflow.submit(start_event=start)
    hanging_event(handle)  # job 3 hangs: the run stays running
    run_id = handle.run_id
    wait_until(lambda: len(pair.probe(run_id, "notes")) == 3, what="jobs 0-2 noted")
    (start_entry,) = pair.probe(run_id, "start")
    work = {entry.split(":")[0]: entry.split(":")[1] for entry in pair.probe(run_id, "work")}

    # The broker delivers the messages of committed deliveries again, as sent.
    replays = [
        Delivery(run_id, workflow.workflow_name, "start", start, start_entry.split(":")[1]),
        Delivery(run_id, workflow.workflow_name, "work", flows.Job(index=1, work_s=0.0), work["1"]),
    ]
    run_blocking(lambda: pair.cluster.engine.transport.dispatch(replays))
    time.sleep(2.0)  # ample for both messages to be consumed
    starts = pair.probe(run_id, "start")
    notes = pair.probe(run_id, "notes")
    handle.cancel()

    assert starts == [start_entry], "the body of a committed delivery never runs again"
    assert len(notes) == 3, notes
    assert all(len(ids) == 1 for ids in distinct_deliveries(pair.probe(run_id, "work")).values())
    assert handle.status == "cancelled"
