"""Run the benchmarks side by side: ``python -m benchmarks`` (or ``python benchmarks/run.py``).

Options:
  --quick          fewer repetitions and shorter distributed loops (a smoke run)
  --only NAME      run only these benchmarks (repeatable, or comma-separated):
                   hop, roundtrips, fanout, io, state, footprint
  --broker NAME    the distributed benchmarks' broker: redis (default) or rabbitmq
                   (the store is Redis either way; ``roundtrips`` needs the Redis broker)
  --json PATH      also write every figure, ratio and verdict as JSON
  --list           list the benchmarks and exit

Every benchmark prints median/min/max over its repetitions and the ratio to the
baseline it names, measured in the same invocation, then PASS/MISS per target.
The distributed ones start ``celery worker`` subprocesses on the Redis at
127.0.0.1:6379 (broker DB 12, store DB 13; ``STALKFLOW_BENCH_BROKER_URL`` and
``STALKFLOW_BENCH_REDIS_URL`` override), with keys and queues of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):  # run as a script: benchmarks/ is sys.path[0], not the root
    _root = Path(__file__).resolve().parents[1]
    sys.path[:1] = [str(_root)]

from benchmarks import _cluster, fanout, footprint, hop, iobound, roundtrips, state
from benchmarks._bench import Bench
from benchmarks._report import Report

#: In the order they run; names as ``--only`` takes them.
BENCHMARKS = {
    "hop": hop,
    "roundtrips": roundtrips,
    "fanout": fanout,
    "io": iobound,
    "state": state,
    "footprint": footprint,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="stalkflow benchmarks, side by side"
    )
    parser.add_argument("--quick", action="store_true", help="fewer and shorter repetitions")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these ({', '.join(BENCHMARKS)}); repeatable or comma-separated",
    )
    parser.add_argument(
        "--broker",
        choices=("redis", "rabbitmq"),
        default="redis",
        help="the distributed benchmarks' broker (default redis; the store is Redis)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    names = [name.strip() for item in args.only for name in item.split(",") if name.strip()]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {list(BENCHMARKS)}")
    args.names = [name for name in BENCHMARKS if name in names] if names else list(BENCHMARKS)
    return args


def describe_machine() -> str:
    tree = "unknown"
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"], cwd=root, capture_output=True, text=True
        ).stdout.splitlines()
        tree = f"{head}" + (f" + {len(dirty)} uncommitted change(s) in src/" if dirty else "")
    except OSError:
        pass
    return (
        f"python {platform.python_version()}, {os.cpu_count()} cores, {platform.machine()}; "
        f"stalkflow tree {tree}"
    )


async def run_all(names: list[str], quick: bool, report: Report) -> None:
    bench = Bench(report, quick=quick)
    try:
        for name in names:
            started = time.monotonic()
            try:
                await BENCHMARKS[name].run(bench)
            except Exception as exc:
                report.failed(name, f"{type(exc).__name__}: {exc}")
                traceback.print_exc()
            print(f"  ({name}: {time.monotonic() - started:.0f} s)", flush=True)
    finally:
        await bench.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for name, module in BENCHMARKS.items():
            print(f"{name:<11} {module.TITLE}")
        return 0
    # The benchmarks' own runs must not be logged at INFO; workers log to files.
    logging.basicConfig(level=logging.WARNING)
    for variable in ("STALKFLOW_BROKER_URL", "STALKFLOW_REDIS_URL"):
        os.environ.pop(variable, None)  # embedded runs stay embedded
    if args.broker == "rabbitmq" and not os.environ.get("STALKFLOW_BENCH_BROKER_URL"):
        os.environ["STALKFLOW_BENCH_BROKER_URL"] = _cluster.RABBITMQ_URL
    report = Report()
    print(f"stalkflow benchmarks ({'quick' if args.quick else 'full'}): {', '.join(args.names)}")
    print(describe_machine())
    started = time.monotonic()
    asyncio.run(run_all(args.names, args.quick, report))
    print(report.summary())
    print(f"total {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(report.as_json(), indent=2, default=str))
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
