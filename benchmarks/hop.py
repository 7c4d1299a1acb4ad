"""1. Step hop latency: one step re-emits an event to itself N times, then stops.

- embedded: stalkflow's embedded engine vs llama-index-workflows, in this process;
- distributed: one stalkflow worker process (``--pool=solo``; Redis broker, Redis
  store) vs a raw Celery task that re-enqueues itself N times on the same broker
  with the same settings, on one worker process with the same pool.

Figures are microseconds per hop: the run's wall-clock time from ``run()`` to its
result (to the last hop's signal for raw Celery) divided by N. On RabbitMQ
(``--broker rabbitmq``) both workers run ``--pool=threads --concurrency=1`` (one
task at a time, as solo): there Celery's solo pool stalls a task that re-enqueues
itself after a hop or a few (the raw baseline never finishes).
"""

from __future__ import annotations

import uuid

from benchmarks import flows, raw_celery
from benchmarks._bench import SOLO_ARGS, Bench, alternate, timed
from benchmarks._cluster import Worker
from benchmarks._report import fmt, stats
from stalkflow.engine import Engine
from stalkflow.handler import WorkflowHandler

#: One task at a time on RabbitMQ, where the solo pool stalls the raw baseline.
ONE_THREAD_ARGS = ("--pool=threads", "--concurrency=1")

NAME = "hop"
TITLE = "Step hop latency (one step re-emitting an event to itself)"

EMBEDDED_HOPS = 2000


async def embedded_hop_us(hops: int) -> float:
    workflow = flows.HopFlow(timeout=None, engine=Engine.embedded())
    elapsed, result = await timed(lambda: workflow.run(hops=hops))
    assert result == "done", result
    return elapsed / hops * 1e6


async def upstream_hop_us(hops: int) -> float:
    workflow = flows.upstream_flows().HopFlow(timeout=None)
    elapsed, result = await timed(lambda: workflow.run(hops=hops))
    assert result == "done", result
    return elapsed / hops * 1e6


async def distributed_hop_us(bench: Bench, hops: int, *, record: bool = True) -> float:
    workflow = flows.HopFlow(timeout=600, engine=bench.engine)
    handlers = []

    def start() -> WorkflowHandler:
        handlers.append(workflow.run(hops=hops))
        return handlers[-1]

    elapsed, result = await timed(start)
    assert result == "done", result
    if record:
        bench.finished_runs.setdefault(f"HopFlow, {hops} hops", []).append(handlers[0].run_id)
    return elapsed / hops * 1e6


async def raw_hop_us(bench: Bench, hops: int) -> float:
    done_key = f"bench:{bench.session.id}:raw:{uuid.uuid4().hex}"

    async def run() -> object:
        bench.raw_app.send_task(raw_celery.HOP_TASK, args=[hops, done_key])
        return bench.store.blpop([done_key], timeout=600)

    elapsed, reply = await timed(run)
    assert reply is not None, "the raw Celery chain did not finish"
    return elapsed / hops * 1e6


def hop_workers(bench: Bench) -> tuple[Worker, Worker]:
    """One stalkflow worker and one raw Celery worker, each one process, one task at a time."""
    args = SOLO_ARGS if bench.session.redis_broker else ONE_THREAD_ARGS
    ours, raw = bench.use_workers(
        {"sf-solo": bench.stalkflow_worker(args), "raw-solo": bench.raw_worker(args)}
    )
    return ours, raw


async def run(bench: Bench) -> None:
    report = bench.report
    report.section(NAME, TITLE)

    reps = bench.pick(7, 3)
    report.note(f"embedded: {EMBEDDED_HOPS} hops per run, {reps} runs each, interleaved")
    await embedded_hop_us(100)  # warm-up: imports, pydantic and validation caches
    await upstream_hop_us(100)
    samples = await alternate(
        {
            "stalkflow": lambda: embedded_hop_us(EMBEDDED_HOPS),
            "upstream": lambda: upstream_hop_us(EMBEDDED_HOPS),
        },
        reps,
    )
    ours = report.add(NAME, stats("stalkflow embedded", "µs/hop", samples["stalkflow"]))
    theirs = report.add(
        NAME, stats("llama-index-workflows in process", "µs/hop", samples["upstream"])
    )
    ratio = report.ratio(NAME, "embedded / upstream", ours, theirs)
    report.target(
        NAME,
        "embedded hop <= 0.5x llama-index-workflows",
        ratio <= 0.5,
        f"{fmt(ours.median)} vs {fmt(theirs.median)} µs/hop = {ratio:.2f}x",
    )

    hops = bench.pick(2000, 500)
    reps = bench.pick(5, 2)
    session = bench.session
    pool = "--pool=solo" if session.redis_broker else "--pool=threads --concurrency=1"
    report.note(
        f"distributed: {hops} hops per run, {reps} runs each, one worker process each "
        f"({pool}), {session.broker_name} broker + Redis store"
    )
    our_worker, raw_worker = hop_workers(bench)
    await distributed_hop_us(bench, 20, record=False)  # warm-up: connections, scripts, tasks
    await raw_hop_us(bench, 20)
    ours_cpu: dict[str, list[float]] = {}
    raw_cpu: dict[str, list[float]] = {}
    samples = await alternate(
        {
            "stalkflow": bench.cpu_meter(
                [our_worker], hops, ours_cpu, lambda: distributed_hop_us(bench, hops)
            ),
            "raw": bench.cpu_meter([raw_worker], hops, raw_cpu, lambda: raw_hop_us(bench, hops)),
        },
        reps,
    )
    ours = report.add(NAME, stats("stalkflow, 1 worker process", "µs/hop", samples["stalkflow"]))
    theirs = report.add(NAME, stats("raw Celery self-re-enqueue", "µs/hop", samples["raw"]))
    report.add(NAME, stats("stalkflow: worker CPU", "µs/hop", ours_cpu["workers"]))
    report.add(NAME, stats("raw Celery: worker CPU", "µs/hop", raw_cpu["workers"]))
    report.add(
        NAME, stats("stalkflow: Redis server CPU (server-wide)", "µs/hop", ours_cpu["redis"])
    )
    report.add(
        NAME, stats("raw Celery: Redis server CPU (server-wide)", "µs/hop", raw_cpu["redis"])
    )
    ratio = report.ratio(NAME, "distributed / raw Celery", ours, theirs)
    report.target(
        NAME,
        "distributed hop <= 1.5x raw Celery hop",
        ratio <= 1.5,
        f"{fmt(ours.median)} vs {fmt(theirs.median)} µs/hop = {ratio:.2f}x",
    )
