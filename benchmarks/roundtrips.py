"""2. Redis round trips per hop, counted on the server (MONITOR), not estimated.

The same hop loops as benchmark 1 (stalkflow on one ``--pool=solo`` worker,
raw Celery on another), each run alone while a MONITOR connection counts the
commands sent to the benchmark's broker and store databases. A round trip is a
command a client waits for, a ``MULTI ... EXEC`` transaction counting once;
commands that Lua scripts run inside Redis are counted apart (they cost Redis
time, not round trips). Everything in those databases is counted, the client's
start and wait included (a handful of commands per run, not per hop).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable

from benchmarks._bench import Bench
from benchmarks._redis_count import CommandCounter, db_of
from benchmarks._report import fmt, stats
from benchmarks.hop import distributed_hop_us, hop_workers, raw_hop_us

NAME = "roundtrips"
TITLE = "Redis round trips per hop, counted with MONITOR (stalkflow vs raw Celery)"


async def counted(
    bench: Bench, hops: int, run: Callable[[], Awaitable[float]]
) -> tuple[CommandCounter, float]:
    session = bench.session
    dbs = {db_of(session.broker_url), db_of(session.redis_url)}
    with CommandCounter(session.redis_url, dbs) as counter:
        hop_us = await run()
    return counter, hop_us


def breakdown(counter: Counter[str], hops: int, top: int = 8) -> str:
    return ", ".join(f"{name} {count / hops:.2f}" for name, count in counter.most_common(top))


async def run(bench: Bench) -> None:
    report = bench.report
    report.section(NAME, TITLE)
    if not bench.session.redis_broker:
        report.note("not run: it counts a Redis broker's commands (run it with --broker redis)")
        return
    hops = bench.pick(2000, 500)
    reps = bench.pick(2, 1)
    report.note(f"{hops} hops per run, {reps} counted run(s) each; per hop:")
    hop_workers(bench)
    await distributed_hop_us(bench, 20, record=False)
    await raw_hop_us(bench, 20)

    results: dict[str, list[CommandCounter]] = {"stalkflow": [], "raw": []}
    for _ in range(reps):
        counter, _ = await counted(bench, hops, lambda: distributed_hop_us(bench, hops))
        results["stalkflow"].append(counter)
        counter, _ = await counted(bench, hops, lambda: raw_hop_us(bench, hops))
        results["raw"].append(counter)

    figures = {}
    for name, label in (("stalkflow", "stalkflow"), ("raw", "raw Celery")):
        counters = results[name]
        trips = report.add(
            NAME,
            stats(f"{label}: round trips", "per hop", [c.round_trips / hops for c in counters]),
        )
        report.add(
            NAME,
            stats(
                f"{label}: client commands", "per hop", [c.client_commands / hops for c in counters]
            ),
        )
        report.add(
            NAME,
            stats(
                f"{label}: commands run by Lua scripts",
                "per hop",
                [c.script_commands / hops for c in counters],
            ),
        )
        last = counters[-1]
        report.extra(
            NAME,
            f"{name}_round_trips_by_command",
            {k: v / hops for k, v in last.by_command.items()},
            f"{label} round trips by command: {breakdown(last.by_command, hops)}",
        )
        if last.by_script_command:
            report.extra(
                NAME,
                f"{name}_script_commands",
                {k: v / hops for k, v in last.by_script_command.items()},
                f"{label} script commands: {breakdown(last.by_script_command, hops, 10)}",
            )
        figures[name] = trips
    extra = figures["stalkflow"].median - figures["raw"].median
    report.extra(NAME, "extra_round_trips_per_hop", extra)
    report.target(
        NAME,
        "distributed hop <= raw Celery + 3 Redis round trips",
        extra <= 3.0 + 1e-9,
        f"{fmt(figures['stalkflow'].median)} vs {fmt(figures['raw'].median)} per hop "
        f"= raw + {fmt(extra)}",
    )
