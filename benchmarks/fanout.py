"""3. Fan-out/fan-in: one step sends N events, a num_workers=64 step answers each,
a collector gathers all N with ``collect_events``.

Events per second = N / the run's wall-clock time, for stalkflow embedded and on
1 and 2 worker processes (each ``--pool=threads --concurrency=100``: one process
running many async steps on its event loop), against llama-index-workflows in
this process.
"""

from __future__ import annotations

from benchmarks import flows
from benchmarks._bench import THREADS_ARGS, Bench, alternate, timed
from benchmarks._report import fmt, stats
from stalkflow.engine import Engine
from stalkflow.handler import WorkflowHandler

NAME = "fanout"
TITLE = "Fan-out/fan-in: N events to a num_workers=64 step, gathered with collect_events"

COUNT = 1000


async def embedded_events_per_s(count: int) -> float:
    workflow = flows.FanOutFlow(timeout=None, engine=Engine.embedded())
    elapsed, result = await timed(lambda: workflow.run(count=count))
    assert result == count, result
    return count / elapsed


async def upstream_events_per_s(count: int) -> float:
    workflow = flows.upstream_flows().FanOutFlow(timeout=None)
    elapsed, result = await timed(lambda: workflow.run(count=count))
    assert result == count, result
    return count / elapsed


async def distributed_events_per_s(bench: Bench, count: int, *, record: bool = True) -> float:
    workflow = flows.FanOutFlow(timeout=900, engine=bench.engine)
    handlers: list[WorkflowHandler] = []

    def start() -> WorkflowHandler:
        handlers.append(workflow.run(count=count))
        return handlers[-1]

    elapsed, result = await timed(start)
    assert result == count, result
    if record:
        label = f"FanOutFlow, {count} events"
        bench.finished_runs.setdefault(label, []).append(handlers[0].run_id)
    return count / elapsed


async def run(bench: Bench) -> None:
    report = bench.report
    report.section(NAME, TITLE)
    reps = bench.pick(3, 1)
    report.note(f"{COUNT} events per run, {reps} run(s) each")

    await embedded_events_per_s(50)
    await upstream_events_per_s(50)
    samples = await alternate(
        {
            "stalkflow": lambda: embedded_events_per_s(COUNT),
            "upstream": lambda: upstream_events_per_s(COUNT),
        },
        reps,
    )
    embedded = report.add(NAME, stats("stalkflow embedded", "events/s", samples["stalkflow"]))
    upstream = report.add(
        NAME, stats("llama-index-workflows in process", "events/s", samples["upstream"])
    )
    ratio = report.ratio(NAME, "embedded / upstream", embedded, upstream)
    report.target(
        NAME,
        "fan-out/fan-in embedded >= 5x llama-index-workflows events/s",
        ratio >= 5.0,
        f"{fmt(embedded.median)} vs {fmt(upstream.median)} events/s = {ratio:.2f}x",
    )

    by_workers = {}
    for processes in (1, 2):
        workers = bench.use_workers(
            {f"sf-threads-{i}": bench.stalkflow_worker(THREADS_ARGS) for i in range(processes)}
        )
        await distributed_events_per_s(bench, 50, record=False)
        cpu: dict[str, list[float]] = {}
        measured = bench.cpu_meter(
            workers, COUNT, cpu, lambda: distributed_events_per_s(bench, COUNT)
        )
        samples_d = [await measured() for _ in range(reps)]
        plural = "process" if processes == 1 else "processes"
        by_workers[processes] = report.add(
            NAME, stats(f"stalkflow, {processes} worker {plural}", "events/s", samples_d)
        )
        report.add(NAME, stats(f"  worker CPU ({processes} {plural})", "µs/event", cpu["workers"]))
        report.add(NAME, stats("  Redis server CPU (server-wide)", "µs/event", cpu["redis"]))
    report.ratio(NAME, "1 worker / upstream", by_workers[1], upstream)
    ratio = report.ratio(NAME, "2 workers / upstream", by_workers[2], upstream)
    report.ratio(NAME, "2 workers / 1 worker", by_workers[2], by_workers[1])
    report.target(
        NAME,
        "fan-out/fan-in on 2 worker processes >= 2x llama-index-workflows events/s",
        ratio >= 2.0,
        f"{fmt(by_workers[2].median)} vs {fmt(upstream.median)} events/s = {ratio:.2f}x",
    )
