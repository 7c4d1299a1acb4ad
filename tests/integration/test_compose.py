"""``docker-compose.yml`` holds together: each service's command starts and serves.

No Docker engine runs here, so each service's command runs as a local process
from the repository root (the image's ``/app``), with the compose environment
pointed at the local Redis (a fresh key prefix and queue), long enough to show
it works: Redis answers PING, the worker answers a Celery ping, Flower and the
web app answer HTTP, and the web app with a worker takes a run through its
human approval.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import redis_test_url, require_service
from tests.integration._cluster import (
    REPO_ROOT,
    broker_test_url,
    delete_keys,
    delete_queue_keys,
    redis_ping,
)

from stalkflow.adapters.celery_app import create_app

pytestmark = [pytest.mark.redis, pytest.mark.celery]

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
START_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def local_env(compose: dict[str, Any]) -> Iterator[dict[str, str]]:
    """The workers' compose environment, pointed at this machine's test Redis."""
    redis_url, broker_url = redis_test_url(), broker_test_url()
    require_service("Redis", redis_ping(redis_url))
    session = f"stalkflow-compose-{uuid.uuid4().hex[:12]}"
    env = dict(os.environ)
    env.update(
        {key: str(value) for key, value in compose["services"]["worker"]["environment"].items()}
    )
    env.update(
        {
            "STALKFLOW_REDIS_URL": redis_url,
            "STALKFLOW_BROKER_URL": broker_url,
            "STALKFLOW_PREFIX": session,
            "STALKFLOW_QUEUE": session,
            "PYTHONUNBUFFERED": "1",
        }
    )
    try:
        yield env
    finally:
        delete_keys(redis_url, f"{session}*")
        delete_queue_keys(broker_url, session)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def local_command(command: Sequence[str], port: int | None = None, new_port: int = 0) -> list[str]:
    """A service's command as it runs here: /app is the repository, ports moved, our Python."""
    args = [
        str(arg).replace("/app/", f"{REPO_ROOT}/").replace("/app", str(REPO_ROOT))
        for arg in command
    ]
    if port is not None:
        args = [arg.replace(str(port), str(new_port)) for arg in args]
    if args[0] == "celery":
        return [sys.executable, "-m", "celery", *args[1:]]
    if args[0] == "python":
        return [sys.executable, *args[1:]]
    if args[0] == "uvicorn":
        return [sys.executable, "-m", "uvicorn", *args[1:]]
    return args


def container_port(service: dict[str, Any]) -> int:
    (mapping,) = service["ports"]
    return int(str(mapping).rsplit(":", 1)[1])


@contextlib.contextmanager
def started(
    args: Sequence[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("w") as out:
        process = subprocess.Popen(
            args, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)


def wait_until(check: Any, process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.2)
    pytest.fail(f"{what} did not start within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def http_ok(port: int, path: str = "/") -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
        return bool(response.status == 200)


# --- the file ----------------------------------------------------------------------------


def test_compose_defines_the_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "worker", "flower", "web"}
    worker = services["worker"]
    # scalable with --scale worker=N: no fixed name, no host port
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["command"][:4] == ["celery", "-A", "worker.app", "worker"]
    env = worker["environment"]
    assert env["STALKFLOW_REDIS_URL"].startswith("redis://redis:")
    assert env["STALKFLOW_WORKFLOWS"]
    assert services["flower"]["environment"] == env
    for name in ("worker", "flower", "web"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert services[name]["build"]["dockerfile"] == "worker/Dockerfile"
    assert (REPO_ROOT / "worker" / "Dockerfile").is_file()


# --- each service's command, run here ----------------------------------------------------


def test_redis_service_command_serves(compose: dict[str, Any], tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed here")
    port = free_port()
    args = [*compose["services"]["redis"]["command"], "--port", str(port), "--bind", "127.0.0.1"]
    log = tmp_path / "redis.log"
    with started(args, {}, log) as process:
        wait_until(redis_ping(f"redis://127.0.0.1:{port}/0"), process, log, "redis-server")


def test_worker_service_command_answers_ping(
    compose: dict[str, Any], local_env: dict[str, str], tmp_path: Path
) -> None:
    node = f"compose-{uuid.uuid4().hex[:8]}@stalkflow-test"
    args = [
        *local_command(compose["services"]["worker"]["command"]),
        "-n",
        node,
        "--without-mingle",
        "--without-gossip",
    ]
    app = create_app(local_env["STALKFLOW_BROKER_URL"], queue=local_env["STALKFLOW_QUEUE"])
    log = tmp_path / "worker.log"
    try:
        with started(args, local_env, log) as process:
            wait_until(
                lambda: app.control.ping(destination=[node], timeout=0.5),
                process,
                log,
                "the worker",
            )
            registered = app.control.inspect(destination=[node], timeout=2).registered() or {}
            assert any(name.endswith(".WordCount.count") for name in registered.get(node, []))
    finally:
        app.close()


def test_flower_service_command_serves_http(
    compose: dict[str, Any], local_env: dict[str, str], tmp_path: Path
) -> None:
    service = compose["services"]["flower"]
    port = free_port()
    args = [
        *local_command(service["command"], container_port(service), port),
        "--address=127.0.0.1",
    ]
    log = tmp_path / "flower.log"
    with started(args, local_env, log) as process:
        wait_until(lambda: http_ok(port, "/healthcheck"), process, log, "flower")
        assert http_ok(port, "/")


def web_command(service: dict[str, Any], port: int) -> list[str]:
    """The web service's command, here: on ``port``, listening on the loopback only."""
    return [*local_command(service["command"], container_port(service), port), "--host=127.0.0.1"]


def test_web_service_command_serves_http(
    compose: dict[str, Any], local_env: dict[str, str], tmp_path: Path
) -> None:
    service = compose["services"]["web"]
    assert service["command"][:2] == ["uvicorn", "examples.webapp.app:app"]
    port = free_port()
    log = tmp_path / "web.log"
    with started(web_command(service, port), local_env, log) as process:
        wait_until(lambda: http_ok(port), process, log, "the web app")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            assert "Submit expense" in response.read().decode()


def test_web_service_runs_an_approval_on_the_worker(
    compose: dict[str, Any], local_env: dict[str, str], tmp_path: Path
) -> None:
    """The stack's web app and worker, as compose starts them: the worker runs the steps."""
    import httpx

    services = compose["services"]
    node = f"compose-web-{uuid.uuid4().hex[:8]}@stalkflow-test"
    worker_args = [
        *local_command(services["worker"]["command"]),
        "-n",
        node,
        "--without-mingle",
        "--without-gossip",
    ]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (
        started(worker_args, local_env, tmp_path / "worker.log"),
        started(web_command(services["web"], port), local_env, tmp_path / "web.log") as web,
    ):
        wait_until(lambda: http_ok(port), web, tmp_path / "web.log", "the web app")
        with httpx.Client(base_url=url, timeout=20) as client:
            created = client.post("/runs", json={"description": "Conference", "amount": 420})
            run_id = created.json()["run_id"]
            with client.stream("GET", f"/runs/{run_id}/events") as stream:
                lines = stream.iter_lines()
                for line in lines:  # the question arrives once a worker ran two steps
                    if line.startswith("data:") and "InputRequiredEvent" in line:
                        assert "Approve 420.00 for 'Conference'?" in line
                        break
                sent = client.post(f"/runs/{run_id}/answer", json={"response": "yes"})
                assert sent.status_code == 202
                tail = [line for line in lines if line.startswith("data:")]
            assert '"type": "StopEvent"' in tail[-1]
            status = client.get(f"/runs/{run_id}").json()
        assert status["status"] == "completed"
        assert status["result"]["decision"] == "approved"
