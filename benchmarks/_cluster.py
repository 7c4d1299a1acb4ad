"""Real worker processes for the distributed benchmarks, as the integration tests start them.

A worker is a ``python -m celery -A <app> worker`` subprocess (``worker.app`` for
stalkflow, :mod:`benchmarks.raw_celery` for the baseline), without gossip, mingle
or heartbeats, its output in a log file, ready once it answers a ``ping``. Every
benchmark session uses its own store key prefix and its own Celery queues, so
concurrent sessions (and the test suite, which uses Redis DBs 14 and 15) never
share runs or messages. The benchmarks' broker is Redis DB 12 and their store
DB 13, unless ``STALKFLOW_BENCH_BROKER_URL`` / ``STALKFLOW_BENCH_REDIS_URL`` say
otherwise; the broker may be RabbitMQ (``--broker rabbitmq``), the store is Redis.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import kombu
import redis

from benchmarks import raw_celery
from stalkflow.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/12"
#: ``python -m benchmarks --broker rabbitmq``: the machine's RabbitMQ (the store stays Redis).
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
REDIS_URL = os.environ.get("STALKFLOW_BENCH_REDIS_URL") or "redis://127.0.0.1:6379/13"
WORKFLOWS_MODULE = "benchmarks.flows"
#: The visibility timeout of both stalkflow and the raw baseline (Celery's Redis default).
VISIBILITY_TIMEOUT_S = 3600.0
READY_TIMEOUT_S = 60.0
#: Celery worker options common to every worker the benchmarks start.
WORKER_FLAGS = ("--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat")


def redis_available(url: str = REDIS_URL) -> str | None:
    """None if the Redis at ``url`` answers, else why not."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


class Session:
    """Names and settings of one benchmark invocation: prefix, queues, log folder."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex[:10]
        self.prefix = f"stalkflow-bench-{self.id}"
        self.queue = f"stalkflow-bench-{self.id}"
        self.raw_queue = f"raw-bench-{self.id}"
        self.broker_url = broker_url()
        self.redis_url = REDIS_URL
        self.log_dir = Path(tempfile.mkdtemp(prefix=f"stalkflow-bench-{self.id}-"))
        self.settings = Settings(
            broker_url=self.broker_url,
            redis_url=self.redis_url,
            prefix=self.prefix,
            queue=self.queue,
            visibility_timeout_s=VISIBILITY_TIMEOUT_S,
        )

    def stalkflow_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "STALKFLOW_BROKER_URL": self.broker_url,
                "STALKFLOW_REDIS_URL": self.redis_url,
                "STALKFLOW_PREFIX": self.prefix,
                "STALKFLOW_QUEUE": self.queue,
                "STALKFLOW_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S),
                "STALKFLOW_WORKFLOWS": WORKFLOWS_MODULE,
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def raw_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                raw_celery.BROKER_ENV: self.broker_url,
                raw_celery.QUEUE_ENV: self.raw_queue,
                raw_celery.DONE_URL_ENV: self.redis_url,
                raw_celery.VISIBILITY_ENV: str(VISIBILITY_TIMEOUT_S),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    @property
    def redis_broker(self) -> bool:
        return self.broker_url.startswith(("redis://", "rediss://", "unix://"))

    @property
    def broker_name(self) -> str:
        return "Redis" if self.redis_broker else "RabbitMQ"

    def cleanup_queues(self) -> None:
        """Delete this session's messages: queued, and unacknowledged ones."""
        if not self.redis_broker:
            _delete_amqp_queues(self.broker_url, (self.queue, self.raw_queue))
            return
        broker = redis.Redis.from_url(self.broker_url)
        try:
            for queue in (self.queue, self.raw_queue):
                _delete_matching(broker, f"{queue}", f"{queue}\x06*")
            _purge_unacked(broker, {self.queue, self.raw_queue})
        finally:
            broker.close()

    def cleanup(self) -> None:
        """Delete this session's keys: runs and state, queues and bindings, messages."""
        self.cleanup_queues()
        store = redis.Redis.from_url(self.redis_url)
        try:
            _delete_matching(store, f"{self.prefix}:*", f"bench:{self.id}:*")
        finally:
            store.close()
        if not self.redis_broker:
            return
        broker = redis.Redis.from_url(self.broker_url)
        try:
            for queue in (self.queue, self.raw_queue):
                _delete_matching(broker, f"{queue}*", f"_kombu.binding*.{queue}")
        finally:
            broker.close()


def _delete_amqp_queues(broker_url: str, queues: Sequence[str]) -> None:
    """Delete the session's queues on an AMQP broker (with their messages, acked or not)."""
    with kombu.Connection(broker_url) as connection:
        channel = connection.default_channel
        for queue in queues:
            channel.queue_delete(queue)


def broker_url() -> str:
    """The benchmarks' broker: ``STALKFLOW_BENCH_BROKER_URL``, else Redis DB 12."""
    return os.environ.get("STALKFLOW_BENCH_BROKER_URL") or DEFAULT_BROKER_URL


def _delete_matching(client: redis.Redis, *patterns: str) -> None:
    for pattern in patterns:
        keys = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])


def _purge_unacked(client: redis.Redis, queues: set[str]) -> None:
    """Drop kombu's unacknowledged-message records whose routing key is one of ``queues``."""
    tags = []
    for tag, raw in client.hscan_iter("unacked", count=1000):
        with contextlib.suppress(ValueError, TypeError, IndexError):
            if json.loads(raw)[2] in queues:
                tags.append(tag)
    for start in range(0, len(tags), 500):
        chunk = tags[start : start + 500]
        client.hdel("unacked", *chunk)
        client.zrem("unacked_index", *chunk)


class Worker:
    """One ``celery worker`` subprocess."""

    def __init__(
        self, name: str, app: str, args: Sequence[str], env: Mapping[str, str], log_dir: Path
    ) -> None:
        self.node = f"{name}@bench"
        self.log_path = log_dir / f"{name}.log"
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app,
            "worker",
            "-n",
            self.node,
            *WORKER_FLAGS,
            *args,
        ]
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=dict(env), stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_mb(self) -> float:
        """Resident memory of the worker process (solo and threads pools: one process)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for pid {self.pid}")

    def cpu_s(self) -> float:
        """CPU seconds (user + system, all threads) the worker process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.node} (exit {self.process.poll()}) ---\n" + "\n".join(text)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self._log.close()


def wait_ready(app: Any, workers: Sequence[Worker], timeout_s: float = READY_TIMEOUT_S) -> None:
    """Wait until every worker answers a ``ping``."""
    nodes = {worker.node for worker in workers}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for worker in workers:
            if worker.process.poll() is not None:
                raise RuntimeError(f"a worker exited while starting:\n{worker.tail()}")
        replies = app.control.ping(destination=sorted(nodes), timeout=0.5) or []
        if nodes <= {node for reply in replies for node in reply}:
            return
    logs = "\n".join(worker.tail() for worker in workers)
    raise RuntimeError(f"workers not ready after {timeout_s} s:\n{logs}")


@contextlib.contextmanager
def workers(
    app: Any, specs: Mapping[str, tuple[str, Sequence[str], Mapping[str, str]]], log_dir: Path
) -> Iterator[list[Worker]]:
    """Start workers (name -> (celery app, extra args, env)), all ready; stop them after."""
    started: list[Worker] = []
    try:
        for name, (celery_app, args, env) in specs.items():
            started.append(Worker(name, celery_app, args, env, log_dir))
        wait_ready(app, started)
        yield started
    finally:
        for worker in started:
            if worker.process.poll() is None:
                worker.process.terminate()  # all at once: shutdowns overlap
        for worker in started:
            worker.stop()
