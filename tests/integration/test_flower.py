"""What Flower and ``celery inspect`` show of stalkflow runs: real Flower, real workers.

``celery flower`` (the flower package) runs against the test broker on a free port,
with basic auth, and workers run with ``-E`` (task events). Each test runs a workflow
of ``tests.cli.cli_flows`` on those workers and reads Flower's HTTP API:

- every step is a task type of its own, ``<workflow>.<step>``;
- a task's args name the run id, step, event type and attempt, never the payload;
- the tasks of one run form one tree: the first step task is the root
  (``root_task_id(run_id)``), each task's parent is the task that dispatched it;
- a step that ends in ``ctx.wait_for_event`` is in the custom state ``WAITING``
  (its ``task-waiting`` event; no ``task-succeeded`` follows).
"""

from __future__ import annotations

import re
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.cli import cli_flows as flows
from tests.cli._harness import REPO_ROOT, Workers, running_workers
from tests.conftest import redis_test_url, require_service
from tests.integration._cluster import broker_test_url, redis_ping, session_settings

from stalkflow.adapters.celery_transport import root_task_id
from stalkflow.events import HumanResponseEvent, InputRequiredEvent

pytest.importorskip("flower")
httpx = pytest.importorskip("httpx")

pytestmark = [pytest.mark.redis, pytest.mark.celery]

RESULT_TIMEOUT_S = 20.0
ARGS = re.compile(r"\(run_id=(\S+) step=(\w+) event=(\w+) attempt=(\d+)\)")


class Flower:
    """A ``celery flower`` process and a client of its HTTP API."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = _free_port()
        self.auth = ("stalkflow", secrets.token_hex(8))
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker.app",
                "flower",
                "--address=127.0.0.1",
                f"--port={self.port}",
                "--persistent=False",
                f"--basic-auth={self.auth[0]}:{self.auth[1]}",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.log_path = log_path
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}", auth=self.auth, timeout=5.0
        )

    def get(self, path: str) -> Any:
        response = self.client.get(path)
        response.raise_for_status()
        return response.json()

    def task(self, task_id: str) -> dict[str, Any] | None:
        response = self.client.get(f"/api/task/info/{task_id}")
        return None if response.status_code == 404 else response.json()

    def run_tasks(self, run_id: str) -> dict[str, dict[str, Any]]:
        """The tasks Flower knows of one run (found by the run id in their args)."""
        tasks: dict[str, dict[str, Any]] = self.get("/api/tasks")
        return {
            task_id: task
            for task_id, task in tasks.items()
            if f"run_id={run_id} " in (task.get("args") or "")
        }

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _eventually(check: Callable[[], Any], what: str, timeout_s: float = RESULT_TIMEOUT_S) -> Any:
    """``check()``'s first truthy value, retried until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _wait_listening(flower: Flower, app: Any) -> None:
    """Until Flower's HTTP API answers and its event receiver sees a probe event."""
    probe = f"probe-{uuid.uuid4()}"

    def seen() -> bool:
        if flower.process.poll() is not None:
            raise AssertionError(f"flower exited:\n{flower.log_path.read_text()}")
        try:
            with app.events.default_dispatcher(hostname="stalkflow-test-probe") as dispatcher:
                dispatcher.send("task-received", uuid=probe, name="probe")
            return flower.task(probe) is not None
        except httpx.TransportError:
            return False

    _eventually(seen, "flower to receive events", timeout_s=30.0)


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workers, Flower]]:
    """Flower, then one worker with task events (``-E``), serving ``tests.cli.cli_flows``."""
    broker_url, redis_url = broker_test_url(), redis_test_url()
    require_service("Redis (store)", redis_ping(redis_url))
    require_service("Redis (broker)", redis_ping(broker_url))
    settings = session_settings(broker_url, redis_url)
    log_dir = Path(tmp_path_factory.mktemp("flower"))
    workers = {f"flower-{settings.prefix}": ["--pool=threads", "--concurrency=4", "-E"]}
    with running_workers(settings, log_dir, workers) as running:
        flower = Flower(running.env, log_dir / "flower.log")
        try:
            _wait_listening(flower, running.engine.transport.app)  # type: ignore[attr-defined]
            yield running, flower
        finally:
            flower.stop()


def test_each_step_is_a_task_and_a_run_is_one_tree(monitored: tuple[Workers, Flower]) -> None:
    workers, flower = monitored
    secret = f"secret-{uuid.uuid4().hex}"
    workflow = flows.Pipeline(timeout=30, engine=workers.engine)
    handle = workflow.submit(text=f"{secret} b c d", parts=2)
    assert handle.get(timeout=RESULT_TIMEOUT_S)["words"] == 4
    run_id = handle.run_id

    def finished() -> dict[str, dict[str, Any]] | None:
        tasks = flower.run_tasks(run_id)
        done = len(tasks) == 5 and all(t["state"] == "SUCCESS" for t in tasks.values())
        return tasks if done else None

    tasks = _eventually(finished, "the run's 5 tasks to succeed in Flower")

    name = workflow.workflow_name
    by_step: dict[str, list[str]] = {}
    for task_id, task in tasks.items():
        match = ARGS.fullmatch(task["args"])
        assert match, task["args"]
        assert match.group(1) == run_id
        step = match.group(2)
        assert task["name"] == f"{name}.{step}"
        assert match.group(3) == {"split": "StartEvent", "count": "Chunk", "total": "Counted"}[step]
        assert match.group(4) == "1"
        assert task["kwargs"] == "{}"
        by_step.setdefault(step, []).append(task_id)
    assert {step: len(ids) for step, ids in by_step.items()} == {"split": 1, "count": 2, "total": 2}
    assert secret not in repr(tasks)  # no payload anywhere

    root = root_task_id(run_id)
    assert by_step["split"] == [root]
    assert {task["root_id"] for task in tasks.values()} == {root}
    assert tasks[root]["parent_id"] is None
    assert all(tasks[t]["parent_id"] == root for t in by_step["count"])
    assert all(tasks[t]["parent_id"] in by_step["count"] for t in by_step["total"])

    info = flower.task(root)
    assert info is not None
    assert info["name"] == f"{name}.split"
    assert info["state"] == "SUCCESS"
    assert info["root_id"] == root
    assert sorted(info["children"]) == sorted(by_step["count"])


def test_a_step_waiting_for_a_human_shows_as_waiting(monitored: tuple[Workers, Flower]) -> None:
    workers, flower = monitored
    handle = flows.Approval(timeout=60, engine=workers.engine).submit(item="invoice-9")
    asked = next(e for e in handle.events() if isinstance(e, InputRequiredEvent))
    assert asked.get("prefix") == "Approve invoice-9?"
    root = root_task_id(handle.run_id)

    waiting = _eventually(
        lambda: (flower.task(root) or {}).get("state") == "WAITING", "the ask task to wait"
    )
    assert waiting
    info = flower.task(root)
    assert info is not None
    assert info["name"] == f"{flows.approval.workflow_name}.ask"
    assert info["succeeded"] is None  # no task-succeeded after task-waiting

    handle.send_event(HumanResponseEvent(response="yes"))
    assert handle.get(timeout=RESULT_TIMEOUT_S) == "invoice-9: yes"

    def rerun() -> dict[str, Any] | None:
        # besides the root: the answered re-run, and the waiter's timeout timer (a task
        # with an ETA, RECEIVED until the timeout, when it finds the waiter resolved)
        tasks = flower.run_tasks(handle.run_id)
        again = [t for task_id, t in tasks.items() if task_id != root and t["state"] == "SUCCESS"]
        return again[0] if len(again) == 1 else None

    second = _eventually(rerun, "the answered step's task to succeed")
    assert second["name"] == info["name"]
    assert second["root_id"] == root
    assert second["parent_id"] == root  # sent from outside the steps: under the root
    first = flower.task(root)
    assert first is not None
    assert first["state"] == "WAITING"  # that execution ended waiting; the re-run is new


def test_celery_inspect_registered_lists_the_step_tasks(
    monitored: tuple[Workers, Flower],
) -> None:
    workers, _ = monitored

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.app",
            "inspect",
            "registered",
            "--destination",
            ",".join(workers.nodes),
            "--timeout",
            "5",
        ],
        cwd=REPO_ROOT,
        env={**workers.env, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    expected = {
        f"{workflow.workflow_name}.{step}"
        for workflow in (flows.pipeline, flows.approval, flows.ticker, flows.broken)
        for step in workflow.step_configs()
    }
    listed = set(re.findall(r"\* (\S+)", done.stdout))
    assert expected <= listed, done.stdout
    assert all(node in done.stdout for node in workers.nodes)
