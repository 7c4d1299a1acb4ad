"""Clusters for the fault tests: real ``celery worker`` processes, real Redis servers.

Built on ``tests/integration/_cluster.py``: the same worker processes and readiness
check, with the settings that make faults visible within seconds (a short
delivery lease, sweep interval and lock lease) and the workflows of
``tests.faults.fault_workflows``. The broker is a Redis database of its own
(``STALKFLOW_TEST_FAULTS_BROKER_URL``, default DB 11): some tests use a short
visibility timeout, and kombu restores every unacknowledged message of a
database that is older than its own timeout, other sessions' too.

``RedisServer`` starts a private ``redis-server`` on a free port (AOF with
``appendfsync always``, ``noeviction``, a password) that a test may kill and
restart, for outages of the store or the broker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import redis
from tests.conftest import redis_test_url, require_service
from tests.faults import fault_workflows as flows
from tests.integration._cluster import (
    Cluster,
    WorkerProcess,
    cluster_env,
    delete_keys,
    delete_queue_keys,
    redis_ping,
    wait_ready,
)

from stalkflow.distributed import build_engine
from stalkflow.settings import Settings
from stalkflow.workflow import Workflow

W = TypeVar("W", bound=Workflow)

DEFAULT_FAULTS_BROKER_URL = "redis://127.0.0.1:6379/11"
FAULT_MODULES = "tests.faults.fault_workflows"
READY_TIMEOUT_S = 30.0
#: What the tests wait for a run that must complete, at most.
RESULT_TIMEOUT_S = 45.0


def faults_broker_url() -> str:
    return os.environ.get("STALKFLOW_TEST_FAULTS_BROKER_URL") or DEFAULT_FAULTS_BROKER_URL


def fault_settings(
    broker_url: str | None = None, redis_url: str | None = None, **overrides: Any
) -> Settings:
    """Settings of a fresh session (its own prefix and queue), tuned to show faults fast.

    The visibility timeout is an hour unless overridden: whatever recovers in
    these tests recovers by stalkflow's own leases and sweeps, not by the broker.
    """
    session = uuid.uuid4().hex[:12]
    values: dict[str, Any] = {
        "broker_url": broker_url or faults_broker_url(),
        "redis_url": redis_url or redis_test_url(),
        "prefix": f"stalkflow-faults-{session}",
        "queue": f"stalkflow-faults-{session}",
        "visibility_timeout_s": 3600.0,
        "delivery_lease_s": 2.0,
        "dispatch_grace_s": 4.0,
        "max_deliveries": 3,
        "sweep_interval_s": 0.5,
        "countdown_max_s": 1.0,
        "lock_lease_s": 1.5,
        "lock_wait_s": 60.0,
        "result_ttl_s": 600.0,
    }
    values.update(overrides)
    return Settings(**values)


def fault_env(settings: Settings, probe_url: str) -> dict[str, str]:
    env = cluster_env(settings)
    env.update(
        {
            "STALKFLOW_WORKFLOWS": FAULT_MODULES,
            "STALKFLOW_FAULTS_PROBE_URL": probe_url,
            "STALKFLOW_FAULTS_PARKED_QUEUE": flows.PARKED_QUEUE,
            "STALKFLOW_DELIVERY_LEASE_S": str(settings.delivery_lease_s),
            "STALKFLOW_DISPATCH_GRACE_S": str(settings.dispatch_grace_s),
            "STALKFLOW_MAX_DELIVERIES": str(settings.max_deliveries),
            "STALKFLOW_SWEEP_INTERVAL_S": str(settings.sweep_interval_s),
            "STALKFLOW_LOCK_LEASE_S": str(settings.lock_lease_s),
            "STALKFLOW_LOCK_WAIT_S": str(settings.lock_wait_s),
            "STALKFLOW_RESULT_TTL_S": str(settings.result_ttl_s),
        }
    )
    if settings.countdown_max_s is not None:
        env["STALKFLOW_COUNTDOWN_MAX_S"] = str(settings.countdown_max_s)
    if settings.step_timeout_s is not None:
        env["STALKFLOW_STEP_TIMEOUT_S"] = str(settings.step_timeout_s)
    return env


@dataclasses.dataclass
class FaultCluster:
    """A client engine, worker processes, and the probe the steps write to."""

    cluster: Cluster
    probe_url: str

    @property
    def settings(self) -> Settings:
        return self.cluster.settings

    @property
    def workers(self) -> list[WorkerProcess]:
        return self.cluster.workers

    @property
    def app(self) -> Any:
        return self.cluster.engine.transport.app  # type: ignore[attr-defined]

    def workflow(self, cls: type[W], **kwargs: Any) -> W:
        """An instance of a fault workflow that runs on this cluster."""
        kwargs.setdefault("timeout", 120)
        return cls(engine=self.cluster.engine, **kwargs)

    def start_worker(self, name: str, *args: str) -> WorkerProcess:
        worker = WorkerProcess(
            f"{name}-{self.settings.prefix}", args, self.cluster.env, self.cluster.log_dir
        )
        self.cluster.workers.append(worker)
        wait_ready(self.app, [worker], READY_TIMEOUT_S)
        return worker

    def probe(self, run_id: str, name: str) -> list[str]:
        """What the steps recorded under ``name``: ``fields...:delivery id:pid`` entries."""
        client = flows.probe_client(self.probe_url)
        return list(client.lrange(flows.probe_key(self.settings.prefix, run_id, name), 0, -1))

    def logs(self) -> str:
        return self.cluster.worker_logs()

    def wait_for_log(self, *fragments: str, timeout_s: float = 20.0) -> str:
        return self.cluster.wait_for_log(*fragments, timeout_s=timeout_s)

    def redis(self) -> redis.Redis:
        assert self.settings.redis_url is not None
        return redis.Redis.from_url(self.settings.redis_url, decode_responses=True)


@contextlib.contextmanager
def fault_cluster(
    log_dir: Path,
    workers: Mapping[str, Sequence[str]],
    settings: Settings | None = None,
    probe_url: str | None = None,
) -> Iterator[FaultCluster]:
    """Start ``workers`` (name -> extra ``celery worker`` arguments) on fresh settings."""
    settings = settings or fault_settings()
    probe_url = probe_url or redis_test_url()
    assert settings.broker_url is not None and settings.redis_url is not None
    require_service("Redis (probe)", redis_ping(probe_url))
    if settings.broker_url.startswith("redis"):
        require_service("Redis (broker)", redis_ping(settings.broker_url))
    engine = build_engine(settings)
    cluster = Cluster(settings, engine, fault_env(settings, probe_url), log_dir)
    faults = FaultCluster(cluster, probe_url)
    try:
        for name, args in workers.items():
            cluster.workers.append(
                WorkerProcess(f"{name}-{settings.prefix}", args, cluster.env, log_dir)
            )
        wait_ready(faults.app, cluster.workers, READY_TIMEOUT_S)
        yield faults
    finally:
        for worker in cluster.workers:
            worker.terminate()
        for worker in cluster.workers:
            with contextlib.suppress(Exception):
                os.kill(worker.process.pid, signal.SIGCONT)  # a test may have stopped it
            worker.stop()
        engine.transport.close()  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            delete_keys(probe_url, f"{settings.prefix}*")
        with contextlib.suppress(Exception):
            delete_keys(settings.redis_url, f"{settings.prefix}*")
        if settings.broker_url.startswith("redis"):
            with contextlib.suppress(Exception):
                delete_queue_keys(settings.broker_url, settings.queue)
                delete_queue_keys(settings.broker_url, flows.PARKED_QUEUE)


# --- waiting --------------------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], Any], timeout_s: float = 20.0, interval_s: float = 0.05, what: str = ""
) -> Any:
    """``predicate()``'s first truthy value; fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")
        time.sleep(interval_s)


def retrying(
    call: Callable[[], Any], timeout_s: float, errors: tuple[type[BaseException], ...]
) -> Any:
    """``call()``, retried while it raises one of ``errors``, for up to ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except errors:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def hanging_event(handle: Any) -> flows.Hanging:
    """The first ``Hanging`` event of a run's stream: which process to hit, and where."""
    for event in handle.events():
        if isinstance(event, flows.Hanging):
            return event
    raise AssertionError(f"run {handle.run_id} ended without hanging")


def distinct_deliveries(entries: Sequence[str]) -> dict[str, set[str]]:
    """Probe entries ``index:delivery id:pid`` grouped: index -> the delivery ids seen."""
    seen: dict[str, set[str]] = {}
    for entry in entries:
        index, delivery_id, _pid = entry.rsplit(":", 2)
        seen.setdefault(index, set()).add(delivery_id)
    return seen


def pids_of(entries: Sequence[str]) -> list[int]:
    return [int(entry.rsplit(":", 1)[1]) for entry in entries]


# --- a private redis-server -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A ``redis-server`` of its own on a free port, with the persistence stalkflow assumes.

    AOF on, ``appendfsync always``, no RDB snapshots, ``maxmemory-policy
    noeviction``, and a password (which must never show in a log or an error).
    ``kill()`` crashes it (SIGKILL); ``start()`` brings it back on the same port
    with the same data.
    """

    def __init__(self, directory: Path, password: str | None = None) -> None:
        self.directory = directory
        self.port = free_port()
        self.password = password or f"pw-{uuid.uuid4().hex}"
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/{db}"

    def start(self, timeout_s: float = 10.0) -> None:
        command = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--requirepass",
            self.password,
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(self._answers, timeout_s, 0.05, f"redis-server on port {self.port}")

    def _answers(self) -> bool:
        try:
            return bool(redis_ping(self.url())())
        except Exception:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        self.kill()
