"""4. I/O-bound concurrency: the fan-out of benchmark 3 where each of the N handlers
awaits ``asyncio.sleep(0.1)``, 100 at a time (``num_workers=100``).

The ideal makespan is N / 100 * 0.1 s (1.0 s for N = 1000). Measured embedded and
on one worker process (``--pool=threads --concurrency=100``), against
llama-index-workflows in this process.
"""

from __future__ import annotations

from benchmarks import flows
from benchmarks._bench import THREADS_ARGS, Bench, alternate, timed
from benchmarks._report import fmt, stats
from stalkflow.engine import Engine

NAME = "io"
TITLE = "I/O-bound concurrency: N handlers each awaiting asyncio.sleep(0.1), num_workers=100"

COUNT = 1000
SLEEP_S = 0.1


async def embedded_makespan(count: int) -> float:
    workflow = flows.IOFanOutFlow(timeout=None, engine=Engine.embedded())
    elapsed, result = await timed(lambda: workflow.run(count=count, sleep_s=SLEEP_S))
    assert result == count, result
    return elapsed


async def upstream_makespan(count: int) -> float:
    workflow = flows.upstream_flows().IOFanOutFlow(timeout=None)
    elapsed, result = await timed(lambda: workflow.run(count=count, sleep_s=SLEEP_S))
    assert result == count, result
    return elapsed


async def distributed_makespan(bench: Bench, count: int) -> float:
    workflow = flows.IOFanOutFlow(timeout=900, engine=bench.engine)
    elapsed, result = await timed(lambda: workflow.run(count=count, sleep_s=SLEEP_S))
    assert result == count, result
    return elapsed


async def run(bench: Bench) -> None:
    report = bench.report
    report.section(NAME, TITLE)
    reps = bench.pick(3, 1)
    report.note(
        f"{COUNT} handlers x {SLEEP_S} s, 100 at a time (ideal {COUNT / 100 * SLEEP_S:.1f} s), "
        f"{reps} run(s) each"
    )
    await embedded_makespan(20)
    await upstream_makespan(20)
    samples = await alternate(
        {
            "stalkflow": lambda: embedded_makespan(COUNT),
            "upstream": lambda: upstream_makespan(COUNT),
        },
        reps,
    )
    embedded = report.add(NAME, stats("stalkflow embedded", "s", samples["stalkflow"]))
    upstream = report.add(NAME, stats("llama-index-workflows in process", "s", samples["upstream"]))
    report.ratio(NAME, "embedded / upstream (makespan)", embedded, upstream)

    workers = bench.use_workers({"sf-threads-0": bench.stalkflow_worker(THREADS_ARGS)})
    await distributed_makespan(bench, 20)
    cpu: dict[str, list[float]] = {}
    measured = bench.cpu_meter(workers, COUNT, cpu, lambda: distributed_makespan(bench, COUNT))
    one = report.add(
        NAME, stats("stalkflow, 1 worker process", "s", [await measured() for _ in range(reps)])
    )
    report.add(NAME, stats("  worker CPU", "µs/event", cpu["workers"]))
    report.add(NAME, stats("  Redis server CPU (server-wide)", "µs/event", cpu["redis"]))
    report.ratio(NAME, "1 worker / upstream (makespan)", one, upstream)
    report.target(
        NAME,
        "I/O makespan embedded <= 1.3 s",
        embedded.median <= 1.3,
        f"{fmt(embedded.median)} s (llama-index-workflows {fmt(upstream.median)} s)",
    )
    report.target(
        NAME,
        "I/O makespan on one worker process <= 2.0 s",
        one.median <= 2.0,
        f"{fmt(one.median)} s",
    )
