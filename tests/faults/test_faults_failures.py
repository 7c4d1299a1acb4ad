"""Steps that fail: always, past their time limit, or with a long retry delay.

On the shared ``pair`` of workers (threads pools, visibility timeout 4 s). A
failing run ends with the step's own exception, at ``await handler`` and at
``handle.get()``, after its retry policy, unless ``@catch_error`` recovers it;
other runs on the same workers go on unaffected.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from tests.faults import fault_workflows as flows
from tests.faults._harness import RESULT_TIMEOUT_S, FaultCluster, fault_cluster

from stalkflow.errors import StepTimeoutError

pytestmark = [pytest.mark.redis, pytest.mark.celery]


def test_a_step_that_always_raises_fails_its_run_and_spares_the_others(
    use_pair: FaultCluster,
) -> None:
    pair = use_pair
    others = [pair.workflow(flows.Echo).submit(n=n) for n in range(6)]
    doomed = pair.workflow(flows.Doomed).submit()
    more = [pair.workflow(flows.Echo).submit(n=n) for n in range(6, 12)]

    with pytest.raises(flows.FlakyError, match=f"boom in run {doomed.run_id}"):
        doomed.get(timeout=RESULT_TIMEOUT_S)

    assert doomed.status == "failed"
    attempts = pair.probe(doomed.run_id, "attempts")
    assert [entry.split(":")[0] for entry in attempts] == ["0", "1", "2"]  # retry numbers
    results = [handle.get(timeout=RESULT_TIMEOUT_S) for handle in [*others, *more]]
    assert results == [{"n": n, "double": 2 * n} for n in range(12)]


async def test_await_handler_raises_the_steps_own_exception(use_pair: FaultCluster) -> None:
    handler = use_pair.workflow(flows.Doomed).run()

    with pytest.raises(flows.FlakyError, match="boom in run"):
        await handler


def test_catch_error_recovers_once_the_retries_are_spent(use_pair: FaultCluster) -> None:
    handle = use_pair.workflow(flows.Rescued).submit()

    result = handle.get(timeout=RESULT_TIMEOUT_S)

    assert result == {"recovered": "fail", "attempts": 2, "error": "FlakyError", "message": "boom"}
    assert len(use_pair.probe(handle.run_id, "attempts")) == 2


def test_a_step_past_its_soft_time_limit_fails_after_its_retries(use_pair: FaultCluster) -> None:
    started = time.monotonic()
    handle = use_pair.workflow(flows.Slow).submit(sleep_s=60)

    with pytest.raises(StepTimeoutError, match=r"'crawl' .* time limit of 1.0 s"):
        handle.get(timeout=RESULT_TIMEOUT_S)

    assert time.monotonic() - started < 15, "the run never hangs on a slow step"
    assert len(use_pair.probe(handle.run_id, "attempts")) == 2


def test_a_sync_step_past_its_time_limit_goes_to_catch_error(use_pair: FaultCluster) -> None:
    result = use_pair.workflow(flows.SlowRescued).submit(sleep_s=3).get(timeout=RESULT_TIMEOUT_S)

    assert result["error"] == "StepTimeoutError"
    assert "time limit of 1.0 s" in result["message"]


def test_celerys_own_soft_time_limit_on_prefork_counts_as_a_step_failure(
    tmp_path: Path,
) -> None:
    # prefork enforces soft_time_limit with a signal; the step fails through the executor
    workers = {"prefork": ["--pool=prefork", "--concurrency=1"]}
    with fault_cluster(tmp_path, workers) as cluster:
        handle = cluster.workflow(flows.Slow).submit(sleep_s=60)
        with pytest.raises(StepTimeoutError):
            handle.get(timeout=RESULT_TIMEOUT_S)
        attempts = cluster.probe(handle.run_id, "attempts")
        alive = cluster.workers[0].process.poll() is None

    assert len(attempts) == 2
    assert alive


def test_a_retry_delay_longer_than_the_visibility_timeout_is_kept_in_the_store(
    use_pair: FaultCluster,
) -> None:
    pair = use_pair
    broker = redis.Redis.from_url(pair.settings.broker_url or "", decode_responses=True)
    try:
        handle = pair.workflow(flows.Patient).submit()  # fails once, retried after 6 s
        run_id = handle.run_id
        # The 6 s delay is longer than the visibility timeout (4 s): as a broker
        # countdown, the message would be held unacknowledged and handed to the
        # other worker after 4 s. It must be in no queue and unacknowledged nowhere.
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if pair.probe(run_id, "attempts"):
                waiting = [*broker.hvals("unacked"), *broker.lrange(pair.settings.queue, 0, -1)]
                assert not any(run_id in message for message in waiting)
            time.sleep(0.2)

        result = handle.get(timeout=RESULT_TIMEOUT_S)
        attempts = pair.probe(run_id, "attempts")
    finally:
        broker.close()

    assert result == "done after a long delay"
    assert len(attempts) == 2, "the body ran once per attempt"
    first, second = (float(entry.split(":")[0]) for entry in attempts)
    assert 5.9 <= second - first < 10.0, second - first
