"""What every benchmark shares: the mode, the report, the distributed client and its workers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

import redis

from benchmarks import _cluster, raw_celery
from benchmarks._report import Report
from stalkflow.context import Context
from stalkflow.core.ids import new_run_id
from stalkflow.engine import Engine
from stalkflow.workflow import Workflow

T = TypeVar("T")

#: A worker process that runs many async steps at once: Celery's threads pool, every
#: thread handing its step to the process's one event loop.
THREADS_ARGS = ("--pool=threads", "--concurrency=100")
#: A worker process that executes one task at a time.
SOLO_ARGS = ("--pool=solo",)


class Bench:
    """The state of one invocation: options, report, Redis session, running workers."""

    def __init__(self, report: Report, *, quick: bool) -> None:
        self.report = report
        self.quick = quick
        self._session: _cluster.Session | None = None
        self._engine: Engine | None = None
        self._raw_app: Any = None
        self._store: redis.Redis | None = None
        self._workers: dict[str, _cluster.Worker] = {}
        #: Run ids of finished distributed runs, by what they ran (for memory figures).
        self.finished_runs: dict[str, list[str]] = {}

    def pick(self, full: T, quick: T) -> T:
        return quick if self.quick else full

    # --- the distributed side ---------------------------------------------------------

    @property
    def session(self) -> _cluster.Session:
        if self._session is None:
            broker_url = _cluster.broker_url()
            problem = _cluster.redis_available(_cluster.REDIS_URL)
            if problem is None and broker_url.startswith("redis"):
                problem = _cluster.redis_available(broker_url)
            if problem is not None:
                raise RuntimeError(f"Redis is not reachable: {problem}")
            self._session = _cluster.Session()
        return self._session

    @property
    def engine(self) -> Engine:
        """The distributed engine of this (client) process."""
        if self._engine is None:
            from stalkflow.distributed import build_engine

            self._engine = build_engine(self.session.settings)
        return self._engine

    @property
    def raw_app(self) -> Any:
        """The raw Celery app that sends the baseline's first hop."""
        if self._raw_app is None:
            session = self.session
            self._raw_app = raw_celery.make_app(
                session.broker_url, session.raw_queue, _cluster.VISIBILITY_TIMEOUT_S
            )
        return self._raw_app

    @property
    def store(self) -> redis.Redis:
        """A plain redis-py client on the store's database."""
        if self._store is None:
            self._store = redis.Redis.from_url(self.session.redis_url)
        return self._store

    def stalkflow_worker(self, args: Sequence[str]) -> tuple[str, Sequence[str], dict[str, str]]:
        return ("worker.app", args, self.session.stalkflow_env())

    def raw_worker(self, args: Sequence[str]) -> tuple[str, Sequence[str], dict[str, str]]:
        return ("benchmarks.raw_celery", args, self.session.raw_env())

    def use_workers(
        self, specs: dict[str, tuple[str, Sequence[str], dict[str, str]]]
    ) -> list[_cluster.Worker]:
        """Exactly these workers (name -> spec) running and ready; others are stopped."""
        session = self.session
        wanted = {f"{name}-{session.id}": spec for name, spec in specs.items()}
        for name in [name for name in self._workers if name not in wanted]:
            self._workers.pop(name).stop()
        started = []
        for name, (app, args, env) in wanted.items():
            if name not in self._workers:
                worker = _cluster.Worker(name, app, args, env, session.log_dir)
                self._workers[name] = worker
                started.append(worker)
        if started:
            try:
                _cluster.wait_ready(self.engine.transport.app, started)  # type: ignore[attr-defined]
            except BaseException:
                for worker in started:
                    self._workers.pop(worker.node.split("@")[0]).stop()
                raise
        return [self._workers[name] for name in wanted]

    def redis_cpu_s(self) -> float:
        """CPU seconds the Redis server has used (server-wide: other clients' work too)."""
        info = self.store.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def cpu_meter(
        self,
        workers: Sequence[_cluster.Worker],
        units: int,
        sink: dict[str, list[float]],
        run: Callable[[], Awaitable[T]],
    ) -> Callable[[], Awaitable[T]]:
        """``run``, also recording CPU µs per unit: ``sink["workers"]``, ``sink["redis"]``."""

        async def measured() -> T:
            workers_before = sum(worker.cpu_s() for worker in workers)
            redis_before = self.redis_cpu_s()
            result = await run()
            workers_used = sum(worker.cpu_s() for worker in workers) - workers_before
            sink.setdefault("workers", []).append(workers_used / units * 1e6)
            sink.setdefault("redis", []).append((self.redis_cpu_s() - redis_before) / units * 1e6)
            return result

        return measured

    def purge_queues(self) -> None:
        """Drop messages left in this session's queues (e.g. waiter timers of finished runs)."""
        self.session.cleanup_queues()

    async def close(self) -> None:
        for worker in self._workers.values():
            if worker.process.poll() is None:
                worker.process.terminate()
        for worker in self._workers.values():
            worker.stop()
        self._workers.clear()
        if self._engine is not None:
            await self._engine.store.aclose()  # type: ignore[attr-defined]
            self._engine.transport.close()  # type: ignore[attr-defined]
        if self._raw_app is not None:
            self._raw_app.close()
        if self._store is not None:
            self._store.close()
        if self._session is not None:
            self._session.cleanup()


# --- helpers ----------------------------------------------------------------------------


async def timed(run: Callable[[], Awaitable[T]]) -> tuple[float, T]:
    """Wall-clock seconds of one awaited call, and its result."""
    started = time.perf_counter()
    result = await run()
    return time.perf_counter() - started, result


async def alternate(
    runs: dict[str, Callable[[], Awaitable[float]]], reps: int
) -> dict[str, list[float]]:
    """``reps`` samples of each run, interleaved (A B, B A, A B ...) so drift hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    for rep in range(reps):
        for name in order if rep % 2 == 0 else reversed(order):
            samples[name].append(await runs[name]())
    return samples


async def bounded(coros: Iterable[Coroutine[Any, Any, T]], limit: int = 50) -> list[T]:
    """Await coroutines with at most ``limit`` at once (a Redis pool holds 100 connections)."""
    gate = asyncio.Semaphore(limit)

    async def one(coro: Coroutine[Any, Any, T]) -> T:
        async with gate:
            return await coro

    return await asyncio.gather(*(one(coro) for coro in coros))


async def start_detached(engine: Engine, workflow: Workflow, **start: Any) -> str:
    """Start a run without a handler waiting on it; returns its id.

    ``workflow.run()`` makes a handler that blocks on a Redis connection until
    the run ends, so 1000 parked runs would need 1000 connections (and redis-py's
    pool stops at 100). This does what ``run()`` does up to the start, no more.
    """
    run_id = new_run_id()
    event = workflow._get_start_event_instance(None, **start)
    seed = workflow._seed(Context(workflow), run_id, event)
    await engine.start_run(workflow, run_id, seed, workflow.timeout)
    return run_id
