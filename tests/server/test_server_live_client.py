"""A real server process (``run_server`` under uvicorn) and llama-agents-server's own client.

``llama_agents.client.WorkflowClient`` (package ``llama-agents-client``) is
upstream's client, used here unchanged, with upstream's own event classes
(``workflows.events``): it runs a workflow, streams events across a
disconnection, answers a human-input request and reads the result. A second
test reads raw SSE over real sockets: a reader disconnects mid-run and resumes
with ``Last-Event-ID`` while another reads on.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.server._helpers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
KEY = "live-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``run_server`` process serving ``tests.server.server_workflows`` on the embedded engine.

    Its output goes to a file (a pipe nobody reads could fill and stall it),
    printed at teardown: pytest shows it when a test failed.
    """
    port = free_port()
    code = (
        "from stalkflow.server import run_server; "
        f"run_server('127.0.0.1', {port}, 'tests.server.server_workflows', api_key={KEY!r}, "
        "sse_heartbeat_interval=0.2, log_level='warning')"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STALKFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    log_path = tmp_path_factory.mktemp("live-server") / "server.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited: {log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"{url}/health", headers=AUTH, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the server did not become healthy in 30 s")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        print(f"--- server log ---\n{log_path.read_text()[-4000:]}")


async def test_llama_agents_client_works_unchanged(live_url: str) -> None:
    from llama_agents.client import WorkflowClient
    from workflows.events import HumanResponseEvent, StartEvent  # upstream's own classes

    async with httpx.AsyncClient(base_url=live_url, headers=AUTH, timeout=20) as http:
        client = WorkflowClient(httpx_client=http)
        assert (await client.is_healthy()).status == "healthy"
        names = (await client.list_workflows()).workflows
        assert {"Greeter", "Asker", "Chatty", "Shop"} <= set(names)

        # run and wait, with upstream's StartEvent
        done = await client.run_workflow("Greeter", start_event=StartEvent(name="Ada"))
        assert done.status == "completed"
        assert done.result is not None and done.result.value == {"result": "hello Ada"}
        assert done.result.type == "StopEvent"

        # the describing routes parse with the client's own models
        graph = (await client.get_workflow_graph("Asker")).graph
        assert {n.id for n in graph.nodes if n.node_type == "step"} == {"ask", "answer"}
        assert (await client.get_workflow_schema("Shop")).start["title"] == "Order"

        # start without waiting; one reader follows the whole run all along...
        handler = await client.run_workflow_nowait("Chatty")
        handler_id = handler.handler_id
        assert handler.status == "running"
        follower = client.get_workflow_events(handler_id)
        follower_types: list[str] = []

        async def follow() -> None:
            async for event in follower:
                follower_types.append(event.type)

        following = asyncio.ensure_future(follow())

        # ...another reads until asked for input, and disconnects
        first = client.get_workflow_events(handler_id)
        first_types = []
        async for event in first:
            first_types.append(event.type)
            if event.type == "InputRequiredEvent":
                break
        cursor = first.last_sequence
        await first.aclose()
        assert first_types == ["Progress", "InputRequiredEvent"]
        assert isinstance(cursor, int)

        # answer with upstream's HumanResponseEvent, then resume from the cursor
        assert (
            await client.send_event(handler_id, HumanResponseEvent(response="7"))
        ).status == "sent"
        resumed = client.get_workflow_events(handler_id, after_sequence=cursor)
        rest: list[tuple[str, dict[str, Any]]] = []
        async for event in resumed:
            rest.append((event.type, event.value))
            if event.type == "InputRequiredEvent":
                await client.send_event(handler_id, HumanResponseEvent(response="stop"))
        assert rest == [
            ("Progress", {"n": 7}),
            ("InputRequiredEvent", {"_data": {"prefix": "more?"}}),
            ("StopEvent", {"result": "done"}),
        ]
        await asyncio.wait_for(following, 10)
        assert follower_types == first_types + [event_type for event_type, _ in rest]

        # the result, from any process, by handler id
        final = await client.wait_for_handler(handler_id, timeout=10, poll_interval=0.05)
        assert final.status == "completed"
        assert final.result is not None and final.result.value == {"result": "done"}
        listed = await client.get_handlers(status=["completed"], workflow_name=["Chatty"])
        assert [h.handler_id for h in listed.handlers] == [handler_id]

        # a finished run takes no more events
        with pytest.raises(httpx.HTTPStatusError) as finished:
            await client.send_event(handler_id, HumanResponseEvent(response="late"))
        assert finished.value.response.status_code == 409

        # cancel
        asking = await client.run_workflow_nowait("Asker")
        assert (await client.cancel_handler(asking.handler_id)).status == "cancelled"
        cancelled = await client.get_handlers(status=["cancelled"])
        assert [h.handler_id for h in cancelled.handlers] == [asking.handler_id]

    # and without the key, the client gets nowhere
    anonymous = WorkflowClient(base_url=live_url)
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await anonymous.list_workflows()
    assert refused.value.response.status_code == 401


async def read_frames(
    lines: AsyncIterator[str], until: str | None = None
) -> tuple[list[tuple[int, str]], int]:
    """(id, type) of the SSE frames read, and the heartbeats seen, up to a frame of ``until``."""
    frames: list[tuple[int, str]] = []
    heartbeats = 0
    frame_id: int | None = None
    async for line in lines:
        if line == ": heartbeat":
            heartbeats += 1
        elif line.startswith("id: "):
            frame_id = int(line[4:])
        elif line.startswith("data: "):
            assert frame_id is not None
            frames.append((frame_id, json.loads(line[6:])["type"]))
            if frames[-1][1] == until:
                break
    return frames, heartbeats


async def test_disconnect_and_resume_with_last_event_id_beside_another_reader(
    live_url: str,
) -> None:
    async with httpx.AsyncClient(base_url=live_url, headers=AUTH, timeout=20) as http:
        started = await http.post("/workflows/Chatty/run-nowait", json={})
        assert started.status_code == 200, started.text
        handler_id = started.json()["handler_id"]
        path = f"/events/{handler_id}"
        everything = {"after_sequence": "-1"}

        async def read_all() -> tuple[list[tuple[int, str]], int]:
            async with http.stream("GET", path, params=everything) as response:
                assert response.status_code == 200
                return await read_frames(response.aiter_lines())

        other = asyncio.ensure_future(read_all())

        async with http.stream("GET", path, params=everything) as response:
            before, _ = await read_frames(response.aiter_lines(), until="InputRequiredEvent")
        last_id = before[-1][0]  # the connection is closed: a real disconnect

        async def answer(text: str) -> None:
            event = {"type": "HumanResponseEvent", "value": {"response": text}}
            sent = await http.post(path, json={"event": event})
            assert sent.status_code == 200, sent.text

        await answer("3")
        headers = {"Last-Event-ID": str(last_id)}
        async with http.stream("GET", path, params=everything, headers=headers) as response:
            lines = response.aiter_lines()
            resumed, _ = await read_frames(lines, until="InputRequiredEvent")
            await asyncio.sleep(1.0)  # silence: heartbeats go to the other reader meanwhile
            await answer("stop")
            tail, _ = await read_frames(lines)
        all_frames, heartbeats = await asyncio.wait_for(other, 10)

    mine = before + resumed + tail
    assert [t for _, t in mine] == [
        "Progress",
        "InputRequiredEvent",
        "Progress",
        "InputRequiredEvent",
        "StopEvent",
    ]
    assert mine == all_frames  # same ids, same events, no duplicates, nothing lost
    assert heartbeats >= 2
