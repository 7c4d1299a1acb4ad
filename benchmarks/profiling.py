"""Profile the hop (and fan-out) benchmarks: where the time of a hop goes.

    python -m benchmarks.profiling [TARGET ...] [--hops N] [--out DIR] [--top N]

Targets (default: embedded-hop distributed-hop raw-hop):

- ``embedded-hop``, ``embedded-fanout``: stalkflow's embedded engine in a child
  process, sampled by py-spy; pyinstrument's call tree of the same loop (run in
  this process) is written next to it;
- ``distributed-hop``, ``distributed-fanout``: py-spy attached to the stalkflow
  worker process while the benchmark loop runs;
- ``distributed-io``: the I/O-bound fan-out (``iobound.py``) on one threads-pool worker;
- ``raw-hop``: py-spy on the raw Celery worker, for Celery's own share.

Each profile gives, per hop (or per event): the process's CPU time by thread
(user and system, from /proc), the Python time holding the GIL by function
(inclusive and self) and by package (``py-spy --gil``), and for the worker's
event loop thread its wall-clock time, waiting included (``py-spy --idle``).
The raw samples (py-spy collapsed stacks) and pyinstrument's trees are written
to ``--out`` (default: a fresh temporary folder).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

if __package__ in (None, ""):
    sys.path[:1] = [str(Path(__file__).resolve().parents[1])]

from benchmarks import flows
from benchmarks._bench import SOLO_ARGS, THREADS_ARGS, Bench
from benchmarks._report import Report, fmt
from benchmarks.fanout import distributed_events_per_s
from benchmarks.hop import distributed_hop_us, raw_hop_us
from benchmarks.iobound import distributed_makespan
from stalkflow.engine import Engine

TARGETS = (
    "embedded-hop",
    "distributed-hop",
    "raw-hop",
    "embedded-fanout",
    "distributed-fanout",
    "distributed-io",
)
DEFAULT_TARGETS = ("embedded-hop", "distributed-hop", "raw-hop")
PY_SPY = Path(sys.executable).with_name("py-spy")
RATE_HZ = 200

Stack = tuple[str, ...]


# --- summarising samples -------------------------------------------------------------------


def package_of(frame: str) -> str:
    """The package a frame's file belongs to, from ``function (path:line)``."""
    path = frame.rsplit("(", 1)[-1].rstrip(")")
    path = path.rsplit(":", 1)[0]
    if "stalkflow/" in path:
        return "stalkflow." + path.split("stalkflow/", 1)[1].split("/")[0].removesuffix(".py")
    if "benchmarks" in path:
        return "benchmark workflow code"
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/")[0].removesuffix(".py")
    if path.startswith(("<", "built-in")):
        return "builtins"
    head = path.split("/")[0].removesuffix(".py")
    return f"stdlib {head}"


def tables(stacks: Iterable[tuple[Stack, float]], per: float, unit: str, top: int) -> str:
    """Inclusive and self time per function, self time per package, divided by ``per``."""
    inclusive: dict[str, float] = defaultdict(float)
    own: dict[str, float] = defaultdict(float)
    packages: dict[str, float] = defaultdict(float)
    total = 0.0
    for stack, weight in stacks:
        if not stack:
            continue
        total += weight
        for frame in set(stack):
            inclusive[frame] += weight
        own[stack[-1]] += weight
        packages[package_of(stack[-1])] += weight
    lines = [f"total {fmt(total / per)} {unit}", "", f"inclusive ({unit}):"]
    for frame, weight in sorted(inclusive.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"  {fmt(weight / per):>9}  {100 * weight / total:5.1f}%  {frame}")
    lines += ["", f"inclusive, stalkflow's own functions ({unit}):"]
    ours = [(frame, weight) for frame, weight in inclusive.items() if "stalkflow/" in frame]
    for frame, weight in sorted(ours, key=lambda item: -item[1])[:top]:
        lines.append(f"  {fmt(weight / per):>9}  {100 * weight / total:5.1f}%  {frame}")
    lines += ["", f"self ({unit}):"]
    for frame, weight in sorted(own.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"  {fmt(weight / per):>9}  {100 * weight / total:5.1f}%  {frame}")
    lines += ["", f"self by package ({unit}):"]
    for package, weight in sorted(packages.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"  {fmt(weight / per):>9}  {100 * weight / total:5.1f}%  {package}")
    return "\n".join(lines)


def collapsed(path: Path) -> dict[str, list[tuple[Stack, float]]]:
    """py-spy's raw output: stacks by thread name, each weighted by its sample count."""
    by_thread: dict[str, list[tuple[Stack, float]]] = defaultdict(list)
    for line in path.read_text(errors="replace").splitlines():
        frames, _, count = line.rpartition(" ")
        if not frames or not count.isdigit():
            continue
        parts = frames.split(";")
        thread = parts[0].split(": ", 1)[-1]
        thread = thread.rstrip("-0123456789_") or thread  # ThreadPoolExecutor-0_3 -> one group
        by_thread[thread].append((tuple(parts[1:]), float(count)))
    return by_thread


# --- profiling ------------------------------------------------------------------------------


def thread_cpu(pid: int) -> dict[int, tuple[float, float]]:
    """User and system CPU seconds of each thread of ``pid`` so far (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[int(task.name)] = (int(fields[11]) / ticks, int(fields[12]) / ticks)
    return found


def thread_names(path: Path) -> dict[int, str]:
    """Thread ids to names, from py-spy's ``thread (<tid>): <name>`` labels."""
    names = {}
    for line in path.read_text(errors="replace").splitlines():
        label = line.split(";", 1)[0]
        if label.startswith("thread (") and "): " in label:
            tid, _, name = label[len("thread (") :].partition("): ")
            if tid.isdigit():
                names[int(tid)] = name
    return names


def cpu_table(
    before: dict[int, tuple[float, float]],
    after: dict[int, tuple[float, float]],
    names: dict[int, str],
    per: float,
    unit: str,
) -> str:
    rows: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for tid, (user, system) in after.items():
        user0, system0 = before.get(tid, (0.0, 0.0))
        name = names.get(tid, "other threads")
        name = name.rstrip("-0123456789_") or name
        rows[name][0] += user - user0
        rows[name][1] += system - system0
    total_user = sum(row[0] for row in rows.values())
    total_system = sum(row[1] for row in rows.values())
    lines = [
        f"CPU by thread (/proc, {unit}): total {fmt((total_user + total_system) / per)} "
        f"(user {fmt(total_user / per)}, system {fmt(total_system / per)})"
    ]
    for name, (user, system) in sorted(rows.items(), key=lambda item: -sum(item[1])):
        if user + system > 0:
            lines.append(
                f"  {fmt((user + system) / per):>9}  user {fmt(user / per):>7}  "
                f"system {fmt(system / per):>7}  {name}"
            )
    return "\n".join(lines)


async def spy_on(
    pid: int, path: Path, mode: str, run: Callable[[], Awaitable[object]]
) -> tuple[float, dict[int, tuple[float, float]], dict[int, tuple[float, float]]]:
    """py-spy samples of ``pid`` while ``run()`` runs (``mode``: ``--gil`` or ``--idle``).

    Returns the elapsed seconds and the threads' CPU times before and after.
    """
    command = [
        str(PY_SPY),
        "record",
        "--pid",
        str(pid),
        "--format",
        "raw",
        "--output",
        str(path),
        "--rate",
        str(RATE_HZ),
        "--threads",
        "--function",
        mode,
    ]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    await asyncio.sleep(0.5)  # attached
    before = thread_cpu(pid)
    started = time.perf_counter()
    await run()
    elapsed = time.perf_counter() - started
    after = thread_cpu(pid)
    spy.send_signal(signal.SIGINT)
    _, errors = spy.communicate(timeout=60)
    if not path.exists():
        raise RuntimeError(f"py-spy wrote nothing: {errors}")
    return elapsed, before, after


async def profile_process(
    pid: int,
    out: Path,
    label: str,
    units: int,
    unit: str,
    top: int,
    run: Callable[[], Awaitable[object]],
    idle_threads: tuple[str, ...] = (),
) -> str:
    """CPU by thread, Python time holding the GIL, and (optionally) wall clock per thread."""
    per_unit = f"µs/{unit}"
    path = out / f"{label}.gil.collapsed.txt"
    elapsed, before, after = await spy_on(pid, path, "--gil", run)
    by_thread = collapsed(path)
    stacks = [entry for entries in by_thread.values() for entry in entries]
    sections = [
        f"wall {fmt(elapsed / units * 1e6)} {per_unit} while sampled (py-spy adds overhead)",
        cpu_table(before, after, thread_names(path), units / 1e6, per_unit),
        f"Python holding the GIL, all threads (py-spy --gil, {RATE_HZ} Hz)\n"
        + tables(stacks, units * RATE_HZ / 1e6, per_unit, top),
    ]
    if idle_threads:
        path = out / f"{label}.idle.collapsed.txt"
        elapsed, _, _ = await spy_on(pid, path, "--idle", run)
        for thread, entries in sorted(collapsed(path).items()):
            if thread in idle_threads:
                sections.append(
                    f"thread {thread}, wall clock (py-spy --idle; waiting included)\n"
                    + tables(entries, units * RATE_HZ / 1e6, per_unit, top)
                )
    return "\n\n".join(sections)


# --- the embedded subjects, in a child process -----------------------------------------------


async def embedded_subject(target: str) -> tuple[Callable[[], Awaitable[object]], int, str]:
    if target == "embedded-hop":

        async def hops() -> None:
            for _ in range(10):
                await flows.HopFlow(timeout=None, engine=Engine.embedded()).run(hops=2000)

        return hops, 20000, "hop"

    async def fan() -> None:
        await flows.FanOutFlow(timeout=None, engine=Engine.embedded()).run(count=1000)

    return fan, 1000, "event"


async def child(target: str) -> None:
    """Warm up, say READY, run the subject when told, say how long it took."""
    run, _, _ = await embedded_subject(target)
    await run()
    print("READY", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    started = time.perf_counter()
    await run()
    print(f"DONE {time.perf_counter() - started}", flush=True)


async def profile_embedded(out: Path, target: str, top: int) -> str:
    """py-spy on a child process running the subject; pyinstrument's tree in this one."""
    run, units, unit = await embedded_subject(target)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.profiling",
        "--child",
        target,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert process.stdin is not None and process.stdout is not None
    assert (await process.stdout.readline()).strip() == b"READY"

    async def go() -> None:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(b"go\n")
        await process.stdin.drain()
        line = await process.stdout.readline()
        assert line.startswith(b"DONE"), line

    summary = await profile_process(process.pid, out, target, units, unit, top, go)
    await process.wait()

    from pyinstrument import Profiler

    await run()
    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    await run()
    profiler.stop()
    (out / f"{target}.pyinstrument.txt").write_text(profiler.output_text(color=False))
    (out / f"{target}.pyinstrument.html").write_text(profiler.output_html())
    return summary


async def main_async(targets: list[str], hops: int, out: Path, top: int) -> None:
    bench = Bench(Report(), quick=False)
    results: dict[str, str] = {}
    try:
        for target in targets:
            print(f"profiling {target} ...", flush=True)
            if target.startswith("embedded-"):
                results[target] = await profile_embedded(out, target, top)
            elif target == "distributed-hop":
                (worker,) = bench.use_workers({"sf-solo": bench.stalkflow_worker(SOLO_ARGS)})
                await distributed_hop_us(bench, 50, record=False)
                results[target] = await profile_process(
                    worker.pid,
                    out,
                    target,
                    hops,
                    "hop",
                    top,
                    lambda: distributed_hop_us(bench, hops),
                    idle_threads=("stalkflow-worker-loop",),
                )
            elif target == "raw-hop":
                (worker,) = bench.use_workers({"raw-solo": bench.raw_worker(SOLO_ARGS)})
                await raw_hop_us(bench, 50)
                results[target] = await profile_process(
                    worker.pid, out, target, hops, "hop", top, lambda: raw_hop_us(bench, hops)
                )
            elif target in ("distributed-fanout", "distributed-io"):
                (worker,) = bench.use_workers(
                    {"sf-threads-0": bench.stalkflow_worker(THREADS_ARGS)}
                )
                subject = {
                    "distributed-fanout": lambda n: distributed_events_per_s(
                        bench, n, record=False
                    ),
                    "distributed-io": lambda n: distributed_makespan(bench, n),
                }[target]
                await subject(50)
                results[target] = await profile_process(
                    worker.pid,
                    out,
                    target,
                    1000,
                    "event",
                    top,
                    lambda subject=subject: subject(1000),
                    idle_threads=("stalkflow-worker-loop",),
                )
            (out / f"{target}.summary.txt").write_text(results[target])
    finally:
        await bench.close()
    from benchmarks.run import describe_machine

    print(describe_machine())
    for target, text in results.items():
        print(f"\n===== {target} =====\n{text}")
    print(f"\nprofiles written to {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiling")
    parser.add_argument("targets", nargs="*", metavar="TARGET", help=", ".join(TARGETS))
    parser.add_argument("--hops", type=int, default=2000, help="hops per distributed profile")
    parser.add_argument("--out", type=Path, help="folder for the raw profiles")
    parser.add_argument("--top", type=int, default=25, help="rows per table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        asyncio.run(child(args.child))
        return 0
    targets = list(args.targets) or list(DEFAULT_TARGETS)
    unknown = [target for target in targets if target not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {unknown}; choose from {list(TARGETS)}")
    out = args.out or Path(tempfile.mkdtemp(prefix="stalkflow-profiles-"))
    out.mkdir(parents=True, exist_ok=True)
    if not PY_SPY.exists() and any(not t.startswith("embedded") for t in targets):
        parser.error(f"py-spy not found at {PY_SPY}: pip install py-spy")
    for variable in ("STALKFLOW_BROKER_URL", "STALKFLOW_REDIS_URL"):
        os.environ.pop(variable, None)
    asyncio.run(main_async(targets, args.hops, out, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
