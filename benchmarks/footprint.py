"""6. Footprint: worker memory with 1000 runs parked on ``wait_for_event``, and Redis
memory per finished run.

Worker: a fresh ``--pool=solo`` worker (one process) serves one warm-up run,
then its RSS is the idle figure; 1000 runs of a one-step workflow that waits for
an ``Answer`` are started (without handlers: see ``start_detached``), and once
every one has registered its waiter the RSS is read again. Done twice, each on a
fresh worker: with the default waiter timeout (2000 s, as upstream) and with
``timeout=None``, which tells how much the waiter timers cost. Then every run is
answered and completes.

Redis: ``MEMORY USAGE`` (exact, ``SAMPLES 0``) of every key of each finished run,
summed per run; the listing index (``{_index}:runs``, one member per run, pruned by
the sweeps once the run has expired) is shown apart. Runs finished by other
benchmarks of this invocation (hop, fan-out) are measured too.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import defaultdict

from benchmarks import flows
from benchmarks._bench import SOLO_ARGS, Bench, bounded, start_detached
from benchmarks._cluster import Worker
from benchmarks._report import fmt, stats
from stalkflow.core.runs import RunStatus

NAME = "footprint"
TITLE = "Footprint: worker RSS with parked runs; Redis memory per finished run"

RUNS = 1000


def rss(worker: Worker, reads: int = 5) -> float:
    """Median of a few RSS reads, 0.1 s apart (MB)."""
    samples = []
    for _ in range(reads):
        samples.append(worker.rss_mb())
        time.sleep(0.1)
    return statistics.median(samples)


async def park_runs(bench: Bench, timeout_s: float | None, label: str) -> dict[str, float]:
    """A fresh worker; its RSS idle, with RUNS parked runs, and after they finish."""
    engine = bench.engine
    bench.purge_queues()
    (worker,) = bench.use_workers({f"sf-footprint-{label}": bench.stalkflow_worker(SOLO_ARGS)})
    workflow = flows.WaitFlow(timeout=3600, engine=engine)

    warm = workflow.run(timeout_s=timeout_s)
    while not await engine.store.waiters(warm.run_id):
        await asyncio.sleep(0.02)
    await warm.send_event(flows.Answer(value=1))
    assert await warm == 1
    await asyncio.sleep(1.0)
    idle = rss(worker)

    run_ids = await bounded(
        start_detached(engine, workflow, timeout_s=timeout_s) for _ in range(RUNS)
    )
    while True:
        waiting = await bounded(engine.store.waiters(run_id) for run_id in run_ids)
        if all(waiting):
            break
        await asyncio.sleep(0.25)
    await asyncio.sleep(1.0)  # the waiter timers reach the worker after the commits
    parked = rss(worker)

    await bounded(engine.send_event(run_id, flows.Answer(value=1)) for run_id in run_ids)
    for run_id in run_ids:
        record = await engine.wait(run_id, 120)
        assert record is not None and record.status is RunStatus.COMPLETED, record
    bench.finished_runs.setdefault(f"WaitFlow, answered (timeout={timeout_s})", []).extend(run_ids)
    await asyncio.sleep(0.5)
    after = rss(worker)
    return {"idle": idle, "parked": parked, "after": after}


def run_memory(bench: Bench, run_ids: list[str]) -> tuple[list[float], dict[str, float]]:
    """Bytes in Redis per run (every key of the run), and the mean bytes by key kind."""
    client = bench.store
    prefix = bench.session.prefix
    wanted = set(run_ids)
    keys_of: dict[str, list[bytes]] = defaultdict(list)
    for key in client.scan_iter(match=f"{prefix}:{{*", count=5000):
        tag = key.decode().split("{", 1)[1].split("}", 1)[0]
        if tag in wanted:
            keys_of[tag].append(key)
    per_run = []
    by_kind: dict[str, float] = defaultdict(float)
    for run_id in run_ids:
        keys = keys_of.get(run_id, [])
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.memory_usage(key, samples=0)
        sizes = pipe.execute()
        per_run.append(float(sum(size or 0 for size in sizes)))
        for key, size in zip(keys, sizes, strict=True):
            by_kind[key.decode().rsplit(":", 1)[1]] += (size or 0) / len(run_ids)
    return per_run, dict(by_kind)


def index_memory(bench: Bench) -> tuple[int, int]:
    client = bench.store
    key = f"{bench.session.prefix}:{{_index}}:runs"
    return int(client.memory_usage(key, samples=0) or 0), int(client.zcard(key))


def run_ttl_s(bench: Bench, run_id: str) -> float:
    ttl = bench.store.pttl(f"{bench.session.prefix}:{{{run_id}}}:run")
    return ttl / 1000 if ttl and ttl > 0 else float("nan")


async def run(bench: Bench) -> None:
    report = bench.report
    report.section(NAME, TITLE)
    report.note(f"{RUNS} runs parked on wait_for_event, one fresh --pool=solo worker per variant")

    variants = {"default waiter timeout (2000 s)": 2000.0, "timeout=None": None}
    figures = {}
    for index, (label, timeout_s) in enumerate(variants.items()):
        rss_mb = await park_runs(bench, timeout_s, str(index))
        figures[label] = rss_mb
        delta = rss_mb["parked"] - rss_mb["idle"]
        report.extra(NAME, f"rss_mb[{label}]", rss_mb)
        report.note(
            f"{label}: idle {fmt(rss_mb['idle'])} MB, with {RUNS} parked runs "
            f"{fmt(rss_mb['parked'])} MB (+{fmt(delta)} MB, {delta * 1024 / RUNS:.1f} KB/run), "
            f"after they finished {fmt(rss_mb['after'])} MB"
        )
    bench.use_workers({})
    bench.purge_queues()
    default = figures["default waiter timeout (2000 s)"]
    delta = default["parked"] - default["idle"]
    report.target(
        NAME,
        f"worker RSS with {RUNS} waiting runs within 20 MB of idle",
        delta <= 20.0,
        f"+{fmt(delta)} MB ({fmt(default['idle'])} -> {fmt(default['parked'])} MB)",
    )

    for label, run_ids in bench.finished_runs.items():
        per_run, by_kind = run_memory(bench, run_ids)
        report.add(
            NAME, stats(f"Redis per finished run: {label}", "KB/run", [b / 1024 for b in per_run])
        )
        top = sorted(by_kind.items(), key=lambda item: -item[1])[:5]
        report.extra(
            NAME,
            f"redis_bytes_by_key[{label}]",
            by_kind,
            "  by key: "
            + ", ".join(f"{kind} {fmt(size / 1024)} KB" for kind, size in top)
            + f"; expires in {fmt(run_ttl_s(bench, run_ids[0]) / 86400)} days",
        )
    size, members = index_memory(bench)
    if members:
        report.extra(
            NAME,
            "index_bytes_per_run",
            size / members,
            f"listing index: {fmt(size / members)} bytes/run over {members} runs (an entry is "
            "dropped by the sweeps or list_runs once its run has expired)",
        )
