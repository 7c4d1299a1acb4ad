"""5. State contention: 8 concurrent steps, each doing 250 ``edit_state()`` increments.

On the distributed engine (one worker process, ``--pool=threads``, so the 8 steps
run at once), the run's result is the final count, checked to be exactly 2000.
Increments per second = 2000 / the run's wall-clock time. The baseline, in the
same invocation: 8 threads doing the same read-modify-write of a JSON document
in the same Redis under a plain redis-py ``Lock`` (``sleep=0.001`` between
acquire attempts instead of the 0.1 s default, so the lock is not idle between
holders). The embedded engine and llama-index-workflows are shown for context.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import redis

from benchmarks import flows
from benchmarks._bench import THREADS_ARGS, Bench, alternate, timed
from benchmarks._report import fmt, stats
from stalkflow.engine import Engine

NAME = "state"
TITLE = "State contention: 8 concurrent steps x 250 edit_state() increments"

EDITORS = 8
INCREMENTS = 250
TOTAL = EDITORS * INCREMENTS


async def distributed_rate(bench: Bench) -> float:
    workflow = flows.CounterFlow(timeout=900, engine=bench.engine)
    elapsed, count = await timed(lambda: workflow.run(editors=EDITORS, increments=INCREMENTS))
    assert count == TOTAL, f"lost increments: {count} != {TOTAL}"
    return TOTAL / elapsed


async def embedded_rate() -> float:
    workflow = flows.CounterFlow(timeout=None, engine=Engine.embedded())
    elapsed, count = await timed(lambda: workflow.run(editors=EDITORS, increments=INCREMENTS))
    assert count == TOTAL, f"lost increments: {count} != {TOTAL}"
    return TOTAL / elapsed


async def upstream_rate() -> float:
    workflow = flows.upstream_flows().CounterFlow(timeout=None)
    elapsed, count = await timed(lambda: workflow.run(editors=EDITORS, increments=INCREMENTS))
    assert count == TOTAL, f"lost increments: {count} != {TOTAL}"
    return TOTAL / elapsed


def lock_loop_rate(url: str, key: str) -> float:
    """8 threads x 250 locked read-modify-writes of one JSON document with redis-py."""
    client = redis.Redis.from_url(url)
    failures: list[BaseException] = []

    def editor() -> None:
        lock = client.lock(f"{key}:lock", timeout=15, sleep=0.001, blocking_timeout=60)
        try:
            for _ in range(INCREMENTS):
                with lock:
                    raw = client.get(key)
                    state = json.loads(raw) if raw else {}
                    state["count"] = state.get("count", 0) + 1
                    client.set(key, json.dumps(state))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=editor) for _ in range(EDITORS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    try:
        if failures:
            raise failures[0]
        count = json.loads(client.get(key) or "{}").get("count")
        assert count == TOTAL, f"lost increments: {count} != {TOTAL}"
    finally:
        client.delete(key, f"{key}:lock")
        client.close()
    return TOTAL / elapsed


async def run(bench: Bench) -> None:
    report = bench.report
    report.section(NAME, TITLE)
    reps = bench.pick(3, 2)
    report.note(f"{EDITORS} x {INCREMENTS} increments per run, {reps} runs each, interleaved")
    bench.use_workers({"sf-threads-0": bench.stalkflow_worker(THREADS_ARGS)})
    session = bench.session

    async def baseline() -> float:
        return lock_loop_rate(session.redis_url, f"bench:{session.id}:lock:{uuid.uuid4().hex}")

    samples = await alternate(
        {"stalkflow": lambda: distributed_rate(bench), "lock": baseline}, reps
    )
    ours = report.add(
        NAME, stats("stalkflow edit_state, 1 worker process", "incr/s", samples["stalkflow"])
    )
    theirs = report.add(NAME, stats("redis-py Lock loop, 8 threads", "incr/s", samples["lock"]))
    ratio = report.ratio(NAME, "edit_state / redis-py Lock loop", ours, theirs)
    report.target(
        NAME,
        "edit_state increments/s >= 0.5x redis-py Lock loop",
        ratio >= 0.5,
        f"{fmt(ours.median)} vs {fmt(theirs.median)} incr/s = {ratio:.2f}x",
    )

    context = await alternate({"embedded": embedded_rate, "upstream": upstream_rate}, reps)
    report.add(NAME, stats("(context) stalkflow embedded", "incr/s", context["embedded"]))
    report.add(
        NAME, stats("(context) llama-index-workflows in process", "incr/s", context["upstream"])
    )
