"""``examples/webapp``: the example web app, driven over HTTP as its page drives it.

A real uvicorn process serves ``examples.webapp.app:app`` on the embedded engine
(no ``STALKFLOW_*`` settings): an expense is submitted, its event stream shows
the approval question, the answer is posted, and the same stream then shows
the decision and the result. ``tests/integration/test_compose.py`` runs the same
app distributed, as docker-compose's ``web`` service.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def webapp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STALKFLOW_")}
    log_path = tmp_path_factory.mktemp("webapp") / "uvicorn.log"
    args = [sys.executable, "-m", "uvicorn", "examples.webapp.app:app"]
    args += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with log_path.open("w") as log:
        process = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                pytest.fail(f"the web app exited: {log_path.read_text()[-3000:]}")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the web app did not answer in 20 s")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        print(f"--- web app log ---\n{log_path.read_text()[-3000:]}")


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """(id, data) of each SSE frame read from ``lines``."""
    event_id: str | None = None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield event_id, json.loads("\n".join(data))
            event_id, data = None, []
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def test_submit_watch_answer_result(webapp: str) -> None:
    with httpx.Client(base_url=webapp, timeout=10) as client:
        page = client.get("/")
        assert "Submit expense" in page.text
        assert "EventSource" in page.text  # the page follows the run over SSE

        created = client.post("/runs", json={"description": "Team lunch", "amount": 84.5})
        assert created.status_code == 201
        run_id = created.json()["run_id"]
        assert client.get(f"/runs/{run_id}").json()["status"] == "running"

        seen: list[dict[str, Any]] = []
        with client.stream("GET", f"/runs/{run_id}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = sse_events(stream.iter_lines())
            for _, event in events:
                seen.append(event)
                if event["type"] == "InputRequiredEvent":
                    break
            assert seen[0] == {
                "type": "Progress",
                "data": {"message": "'Team lunch' (84.50) needs a manager's approval"},
            }
            assert seen[-1]["data"]["prefix"] == "Approve 84.50 for 'Team lunch'? (yes/no)"
            assert client.get(f"/runs/{run_id}").json()["status"] == "running"

            answered = client.post(f"/runs/{run_id}/answer", json={"response": "yes"})
            assert answered.status_code == 202

            rest = [event for _, event in events]  # the same stream, until it ends
        assert [event["type"] for event in rest] == ["Progress", "StopEvent"]
        assert rest[0]["data"]["message"] == "'Team lunch' approved"
        final = rest[1]["data"]["result"]
        assert final["decision"] == "approved"
        assert final["history"] == ["submitted 84.50 for Team lunch", "approved: 'yes'"]

        status = client.get(f"/runs/{run_id}").json()
        assert status == {"run_id": run_id, "status": "completed", "result": final, "error": None}

        # a reader coming back resumes after the last event it saw
        with client.stream(
            "GET", f"/runs/{run_id}/events", headers={"Last-Event-ID": "2"}
        ) as again:
            resumed = list(sse_events(again.iter_lines()))
        assert [(event_id, event["type"]) for event_id, event in resumed] == [
            ("3", "Progress"),
            ("4", "StopEvent"),
        ]

        late = client.post(f"/runs/{run_id}/answer", json={"response": "no"})
        assert late.status_code == 409


def test_a_rejection_and_bad_requests(webapp: str) -> None:
    with httpx.Client(base_url=webapp, timeout=10) as client:
        assert client.post("/runs", json={"description": "", "amount": 5}).status_code == 422
        assert client.post("/runs", json={"description": "x", "amount": -1}).status_code == 422
        assert client.get("/runs/no-such-run").status_code == 404
        assert client.get("/runs/bad%20id/events").status_code == 404
        assert client.post("/runs/no-such-run/answer", json={"response": "y"}).status_code == 404

        run_id = client.post("/runs", json={"description": "Yacht", "amount": 99000}).json()[
            "run_id"
        ]
        with client.stream("GET", f"/runs/{run_id}/events") as stream:
            events = sse_events(stream.iter_lines())
            for _, event in events:
                if event["type"] == "InputRequiredEvent":
                    break
            assert client.post(f"/runs/{run_id}/answer", json={"response": ""}).status_code == 422
            client.post(f"/runs/{run_id}/answer", json={"response": "no way"})
            last = [event for _, event in events][-1]
        assert last["type"] == "StopEvent"
        assert last["data"]["result"]["decision"] == "rejected"
        assert client.get(f"/runs/{run_id}").json()["status"] == "completed"
