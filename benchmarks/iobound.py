"""4. I/O-bound concurrency: the fan-out of benchmark 3 where each of the N handlers
awaits ``asyncio.sleep(0.1)``, 100 at a time (``num_workers=100``).

The ideal makespan is N / 100 * 0.1 s (1.0 s for N = 1000). Measured embedded and
on one worker process (``--pool=threads --concurrency=100``), against
llama-index-workflows in this process, and, on the same broker and worker
settings, against the same fan-out written as raw Celery tasks (``raw_celery``:
one message per handled item and one per gathered result, as stalkflow sends):
the floor that Celery's per-message work sets for one process.
"""

from __future__ import annotations

import uuid

from benchmarks import flows, raw_celery
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


async def raw_makespan(bench: Bench, count: int) -> float:
    done_key = f"bench:{bench.session.id}:raw-io:{uuid.uuid4().hex}"

    async def run() -> object:
        bench.raw_app.send_task(raw_celery.FAN_TASK, args=[count, SLEEP_S, done_key])
        return bench.store.blpop([done_key], timeout=600)

    elapsed, reply = await timed(run)
    assert reply is not None, "the raw Celery fan-out did not finish"
    bench.store.delete(f"{done_key}:gathered")
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

    ours, raw = bench.use_workers(
        {
            "sf-threads-0": bench.stalkflow_worker(THREADS_ARGS),
            "raw-threads": bench.raw_worker(THREADS_ARGS),
        }
    )
    await distributed_makespan(bench, 20)
    await raw_makespan(bench, 20)
    cpu: dict[str, list[float]] = {}
    raw_cpu: dict[str, list[float]] = {}
    samples = await alternate(
        {
            "stalkflow": bench.cpu_meter(
                [ours], COUNT, cpu, lambda: distributed_makespan(bench, COUNT)
            ),
            "raw": bench.cpu_meter([raw], COUNT, raw_cpu, lambda: raw_makespan(bench, COUNT)),
        },
        reps,
    )
    broker = bench.session.broker_name
    one = report.add(
        NAME, stats(f"stalkflow, 1 worker process ({broker} broker)", "s", samples["stalkflow"])
    )
    report.add(NAME, stats("  worker CPU", "µs/event", cpu["workers"]))
    report.add(NAME, stats("  Redis server CPU (server-wide)", "µs/event", cpu["redis"]))
    floor = report.add(
        NAME, stats(f"raw Celery, 1 worker process ({broker} broker)", "s", samples["raw"])
    )
    report.add(NAME, stats("  worker CPU", "µs/event", raw_cpu["workers"]))
    report.ratio(NAME, "1 worker / upstream (makespan)", one, upstream)
    report.ratio(NAME, "1 worker / raw Celery (makespan)", one, floor)
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
        f"{fmt(one.median)} s on the {broker} broker (raw Celery: {fmt(floor.median)} s)",
    )
