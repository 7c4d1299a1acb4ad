"""Real worker processes for the distributed tests: start, ping, stop.

The session's workers are ``celery -A worker.app worker`` subprocesses, started
once and shared by the tests that ask for them; they serve the sample workflows
of ``tests.fixtures`` and the modules of ``examples/`` (``STALKFLOW_WORKFLOWS``). Every
session uses its own store key prefix and its own Celery queue, so runs, state
and messages of concurrent sessions (or of a crashed earlier one) never mix.

The broker is the Redis DB 14 (``STALKFLOW_TEST_BROKER_URL``), the store the test
Redis (``STALKFLOW_TEST_REDIS_URL``, DB 15); an unreachable Redis skips locally
and fails in CI (``require_service``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from stalkflow.distributed import build_engine
from stalkflow.engine import Engine
from stalkflow.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]

DEFAULT_TEST_BROKER_URL = "redis://127.0.0.1:6379/14"
DEFAULT_TEST_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
#: The example scripts of ``examples/``, served unchanged by the workers.
EXAMPLE_MODULES: tuple[str, ...] = (
    "examples.quickstart",
    "examples.state_counter",
    "examples.state_edit_state",
    "examples.typed_state",
    "examples.typed_state_fields",
    "examples.state_counter_no_result",
    "examples.state_edit_state_no_result",
    "examples.typed_state_ctx_state",
    "examples.context_across_runs",
    "examples.context_across_runs_to_dict",
)
#: The modules workers serve: the test workflows, and the examples.
WORKFLOWS_MODULES = ",".join(
    ("tests.fixtures.distributed_workflows", "tests.fixtures.context_workflows", *EXAMPLE_MODULES)
)
#: Short, so that a message left unacknowledged (a killed worker) returns quickly.
VISIBILITY_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 30.0


def broker_test_url() -> str:
    return os.environ.get("STALKFLOW_TEST_BROKER_URL") or DEFAULT_TEST_BROKER_URL


def amqp_test_url() -> str:
    return os.environ.get("STALKFLOW_TEST_AMQP_URL") or DEFAULT_TEST_AMQP_URL


def redis_ping(url: str) -> Callable[[], object]:
    def check() -> object:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            return client.ping()
        finally:
            client.close()

    return check


def amqp_ping(url: str) -> Callable[[], object]:
    def check() -> object:
        from kombu import Connection

        with Connection(url, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1)
        return True

    return check


# --- a cluster: settings, a client engine, worker processes --------------------------


@dataclasses.dataclass
class Cluster:
    """What a client process needs to reach the workers: settings and environment."""

    settings: Settings
    engine: Engine
    env: dict[str, str]
    log_dir: Path
    workers: list[WorkerProcess] = dataclasses.field(default_factory=list)

    def python(self, code: str, timeout_s: float = 30.0) -> str:
        """Run ``python -c code`` in a fresh process configured like the workers; its stdout."""
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"subprocess failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
            )
        return done.stdout

    def worker_logs(self) -> str:
        """Everything the workers logged so far."""
        return "\n".join(worker.log_path.read_text(errors="replace") for worker in self.workers)

    def wait_for_log(self, *fragments: str, timeout_s: float = 10.0) -> str:
        """The workers' logs once they contain every fragment (fails after ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while True:
            logs = self.worker_logs()
            if all(fragment in logs for fragment in fragments):
                return logs
            if time.monotonic() > deadline:
                missing = [fragment for fragment in fragments if fragment not in logs]
                raise AssertionError(f"workers never logged {missing}:\n{logs[-4000:]}")
            time.sleep(0.1)


def cluster_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "STALKFLOW_BROKER_URL": settings.broker_url or "",
            "STALKFLOW_REDIS_URL": settings.redis_url or "",
            "STALKFLOW_PREFIX": settings.prefix,
            "STALKFLOW_QUEUE": settings.queue,
            "STALKFLOW_VISIBILITY_TIMEOUT_S": str(settings.visibility_timeout_s),
            "STALKFLOW_WORKFLOWS": WORKFLOWS_MODULES,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


class WorkerProcess:
    """One ``celery worker`` subprocess, its output in a log file."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        env: Mapping[str, str],
        log_dir: Path,
    ) -> None:
        self.node = f"{name}@stalkflow-test"
        self.log_path = log_dir / f"{name}.log"
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.app",
            "worker",
            "-n",
            self.node,
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            *args,
        ]
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=dict(env), stdout=self._log, stderr=subprocess.STDOUT
        )

    def tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.node} (exit {self.process.poll()}) ---\n" + "\n".join(text)

    def terminate(self) -> None:
        """Ask for a warm shutdown: finish the current task, then exit."""
        if self.process.poll() is None:
            self.process.terminate()

    def stop(self, timeout_s: float = 10.0) -> None:
        self.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self._log.close()


def wait_ready(app: Any, workers: Sequence[WorkerProcess], timeout_s: float) -> None:
    """Wait until every worker answers a ``ping`` (what ``celery inspect ping`` sends)."""
    nodes = {worker.node for worker in workers}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for worker in workers:
            if worker.process.poll() is not None:
                raise AssertionError(f"a worker exited while starting:\n{worker.tail()}")
        replies = app.control.ping(destination=sorted(nodes), timeout=0.5) or []
        seen = {node for reply in replies for node in reply}
        if nodes <= seen:
            return
    logs = "\n".join(worker.tail() for worker in workers)
    raise AssertionError(f"workers not ready after {timeout_s} s:\n{logs}")


def delete_keys(url: str, *patterns: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        for pattern in patterns:
            keys = list(client.scan_iter(match=pattern, count=500))
            if keys:
                client.delete(*keys)
    finally:
        client.close()


def delete_queue_keys(broker_url: str, queue: str) -> None:
    """A Redis broker's keys of ``queue``: its messages and kombu's bindings."""
    delete_keys(broker_url, f"{queue}*", f"_kombu.binding*.{queue}")


@contextlib.contextmanager
def running_cluster(
    settings: Settings, log_dir: Path, workers: Mapping[str, Sequence[str]]
) -> Iterator[Cluster]:
    """A client engine on ``settings`` and worker processes (name -> extra args), ready."""
    engine = build_engine(settings)
    cluster = Cluster(settings, engine, cluster_env(settings), log_dir)
    app = engine.transport.app  # type: ignore[attr-defined]
    try:
        for name, args in workers.items():
            cluster.workers.append(WorkerProcess(name, args, cluster.env, log_dir))
        wait_ready(app, cluster.workers, READY_TIMEOUT_S)
        yield cluster
    finally:
        for worker in cluster.workers:
            worker.terminate()  # all at once: shutdowns overlap
        for worker in cluster.workers:
            worker.stop()
        engine.transport.close()  # type: ignore[attr-defined]


def session_settings(broker_url: str, redis_url: str) -> Settings:
    session = uuid.uuid4().hex[:12]
    return Settings(
        broker_url=broker_url,
        redis_url=redis_url,
        prefix=f"stalkflow-it-{session}",
        queue=f"stalkflow-it-{session}",
        visibility_timeout_s=VISIBILITY_TIMEOUT_S,
        lock_wait_s=30.0,
    )
