"""Two servers, one run: the server only submits and reads, the worker executes.

Server A runs in this process on the distributed engine; server B is another
process (``run_server``) configured from the same ``STALKFLOW_*`` environment
as the Celery worker. A run started through A is followed, answered and read
through B, and its steps execute on the worker, not in either server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from tests.conftest import redis_test_url, require_service
from tests.fixtures import distributed_workflows as flows
from tests.integration._cluster import (
    REPO_ROOT,
    Cluster,
    broker_test_url,
    delete_keys,
    delete_queue_keys,
    redis_ping,
    running_cluster,
    session_settings,
)
from tests.server._helpers import asgi_client, eventually, free_port

from stalkflow.engine import set_engine
from stalkflow.server import WorkflowServer

pytestmark = [pytest.mark.redis, pytest.mark.celery]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One solo worker on a session prefix and queue of its own."""
    broker_url, redis_url = broker_test_url(), redis_test_url()
    require_service("Redis (store)", redis_ping(redis_url))
    require_service("Redis (broker)", redis_ping(broker_url))
    settings = session_settings(broker_url, redis_url)
    workers = {f"server-solo-{settings.prefix}": ["--pool=solo"]}
    try:
        with running_cluster(settings, tmp_path_factory.mktemp("workers"), workers) as running:
            yield running
    finally:
        delete_keys(redis_url, f"{settings.prefix}*")
        delete_queue_keys(broker_url, settings.queue)


@pytest.fixture(scope="module")
def server_b(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``run_server`` in its own process, configured from the cluster's environment."""
    port = free_port()
    code = (
        "from stalkflow.server import run_server; "
        f"run_server('127.0.0.1', {port}, 'tests.fixtures.distributed_workflows', "
        "api_key='', log_level='warning')"
    )
    env = {**cluster.env, "PYTHONPATH": str(REPO_ROOT)}
    log_path = tmp_path_factory.mktemp("server-b") / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, stdout=log, stderr=log
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None:
                    pytest.fail(f"server B exited: {log_path.read_text()[-4000:]}")
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail("server B did not become healthy in 30 s")
                time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            process.wait(10)
            print(f"--- server B log ---\n{log_path.read_text()[-4000:]}")


async def test_a_run_started_on_one_server_is_served_by_another(
    cluster: Cluster, server_b: str
) -> None:
    set_engine(cluster.engine)  # the fixtures' module-level workflows run on it
    try:
        server_a = WorkflowServer(engine=cluster.engine, api_key="")
        server_a.add_workflow("Greeting", flows.greeting)
        async with asgi_client(server_a) as a, httpx.AsyncClient(base_url=server_b) as b:
            started = await a.post("/workflows/Greeting/run-nowait", json={})
            assert started.status_code == 200, started.text
            handler_id = started.json()["handler_id"]

            seen_by_b = await b.get(f"/handlers/{handler_id}")
            assert seen_by_b.status_code == 202
            assert seen_by_b.json()["workflow_name"] == "Greeting"

            # B streams the run's events, live, while it answers the question
            path = f"/events/{handler_id}"
            types: list[str] = []
            async with b.stream("GET", path, params={"after_sequence": "-1"}) as stream:
                async for line in stream.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    types.append(json.loads(line[6:])["type"])
                    if types[-1] == "InputRequiredEvent":
                        event = {"type": "HumanResponseEvent", "value": {"response": "Zed"}}
                        sent = await b.post(path, json={"event": event})
                        assert sent.status_code == 200, sent.text
            assert types == ["InputRequiredEvent", "StopEvent"]

            async def completed_on_a() -> bool:
                return (await a.get(f"/handlers/{handler_id}")).status_code == 200

            await eventually(completed_on_a, timeout_s=20, what="server A to see the result")
            result = (await a.get(f"/handlers/{handler_id}")).json()["result"]["value"]["result"]
            assert result["greeting"] == "hello Zed"
            assert result["pid"] == cluster.workers[0].process.pid  # the worker executed it
            listed = (await b.get("/handlers", params={"status": "completed"})).json()
            assert handler_id in [h["handler_id"] for h in listed["handlers"]]
    finally:
        set_engine(None)
