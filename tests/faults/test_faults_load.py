"""Contention and load on two worker processes (threads pools of 4).

- 8 concurrent steps x 250 ``edit_state()`` increments of one counter: exactly 2000;
- 8 concurrent steps x 250 ``set`` of distinct keys of one state: none lost;
- 500 concurrent runs: all complete with the right result; afterwards no lock is
  held, the sweeps' index is empty, and every key of the finished runs expires
  with the result TTL (5 s here).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from tests.faults import fault_workflows as flows
from tests.faults._harness import (
    FaultCluster,
    fault_cluster,
    fault_settings,
    pids_of,
    wait_until,
)

from stalkflow._sync import run_blocking

pytestmark = [pytest.mark.redis, pytest.mark.celery]

CONTENTION_TIMEOUT_S = 120.0


@pytest.mark.parametrize(("mode", "field"), [("edit", "count"), ("set", "keys")])
def test_eight_concurrent_steps_lose_no_write(
    use_pair: FaultCluster, mode: str, field: str
) -> None:
    started = time.monotonic()
    handle = use_pair.workflow(flows.Contention).submit(steps=8, writes=250, mode=mode)

    result = handle.get(timeout=CONTENTION_TIMEOUT_S)

    elapsed = time.monotonic() - started
    assert result[field] == 2000, result
    contenders = use_pair.probe(handle.run_id, "contend")
    assert len(contenders) == 8
    assert len(set(pids_of(contenders))) == 2, "the steps ran in both worker processes"
    print(f"{mode}: 2000 writes by 8 steps in {elapsed:.1f} s")


def test_five_hundred_concurrent_runs_complete_and_leave_nothing_behind(tmp_path: Path) -> None:
    ttl_s = 5.0
    settings = fault_settings(result_ttl_s=ttl_s)
    workers = {
        "load-a": ["--pool=threads", "--concurrency=4"],
        "load-b": ["--pool=threads", "--concurrency=4"],
    }
    with fault_cluster(tmp_path, workers, settings) as cluster:
        workflow = cluster.workflow(flows.Echo)

        async def run_all() -> list[object]:
            # 500 runs started at once from one client loop, each awaited as it ends
            handlers = [workflow.run(n=n) for n in range(500)]
            return await asyncio.wait_for(asyncio.gather(*handlers), 120)

        started = time.monotonic()
        results = run_blocking(run_all)
        finished_s = time.monotonic() - started

        client = cluster.redis()
        prefix = cluster.settings.prefix
        try:
            run_keys = [
                key
                for key in client.scan_iter(match=f"{prefix}*", count=1000)
                if "{_index}" not in key
            ]
            locks = [key for key in run_keys if key.endswith(":lock")]
            # -2: gone already (runs that ended first, lock wake-ups); -1 would be never
            ttls = [client.pttl(key) for key in run_keys if ":probe:" not in key]

            # the sweeps drop finished runs from their index
            wait_until(
                lambda: client.zcard(f"{prefix}{{_index}}:active") == 0,
                timeout_s=15,
                what="an empty index of running runs",
            )
            time.sleep(ttl_s + 0.5)
            left = [
                key
                for key in client.scan_iter(match=f"{prefix}*", count=1000)
                if "{_index}" not in key and ":probe:" not in key
            ]
            # a listing forgets the runs whose keys expired
            listed = run_blocking(lambda: cluster.cluster.engine.runs())
            index_left = client.zcard(f"{prefix}{{_index}}:runs")
        finally:
            client.close()

    assert results == [{"n": n, "double": 2 * n} for n in range(500)]
    assert locks == []
    assert ttls and all(ttl == -2 or 0 <= ttl <= ttl_s * 1000 for ttl in ttls), sorted(ttls)[-5:]
    assert left == []
    assert list(listed) == [] and index_left == 0
    print(f"500 runs: all finished after {finished_s:.1f} s")
