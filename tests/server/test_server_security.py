"""The API key, the body size bound, and event decoding that never imports."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import httpx
import pytest
from tests.server import server_workflows as flows
from tests.server._helpers import ServerFactory, asgi_client, eventually

from stalkflow.engine import Engine
from stalkflow.server import WorkflowServer

KEY = "s3cret-key"


# --- API key ----------------------------------------------------------------------------


@pytest.fixture
async def guarded(make_server: ServerFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(make_server(api_key=KEY)) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/health"),
        ("GET", "/workflows"),
        ("POST", "/workflows/greet/run"),
        ("POST", "/workflows/greet/run-nowait"),
        ("GET", "/workflows/greet/schema"),
        ("GET", "/handlers"),
        ("GET", "/handlers/any"),
        ("POST", "/handlers/any/cancel"),
        ("GET", "/results/any"),
        ("GET", "/events/any"),
        ("POST", "/events/any"),
        ("GET", "/openapi.json"),
        ("GET", "/no-such-route"),
    ],
)
async def test_every_route_needs_the_key(
    guarded: httpx.AsyncClient, method: str, path: str
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}):
        response = await guarded.request(method, path, headers=headers, json={})
        assert response.status_code == 401, (headers, response.text)
        assert "API key" in response.json()["detail"]
        assert response.headers["www-authenticate"] == "Bearer"


async def test_refused_requests_start_nothing(guarded: httpx.AsyncClient) -> None:
    refused = await guarded.post("/workflows/greet/run-nowait", json={})
    assert refused.status_code == 401
    listed = await guarded.get("/handlers", headers={"X-API-Key": KEY})
    assert listed.json() == {"handlers": []}


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {KEY}"}, {"authorization": f"bearer {KEY}"}, {"X-API-Key": KEY}],
)
async def test_the_key_in_either_header_is_accepted(
    guarded: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await guarded.post("/workflows/greet/run", json={}, headers=headers)
    assert response.status_code == 200
    assert response.json()["status"] == "completed"


async def test_key_from_the_environment(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STALKFLOW_API_KEY", "from-env")
    from_env = WorkflowServer(engine=engine)
    explicit = WorkflowServer(engine=engine, api_key="explicit")
    async with asgi_client(from_env) as client:
        assert (await client.get("/health")).status_code == 401
        assert (await client.get("/health", headers={"X-API-Key": "from-env"})).status_code == 200
    async with asgi_client(explicit) as client:
        assert (await client.get("/health", headers={"X-API-Key": "from-env"})).status_code == 401
        assert (await client.get("/health", headers={"X-API-Key": "explicit"})).status_code == 200


async def test_no_key_means_an_open_api(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STALKFLOW_API_KEY", raising=False)
    async with asgi_client(WorkflowServer(engine=engine)) as client:
        assert (await client.get("/health")).status_code == 200


# --- body size ----------------------------------------------------------------------------


@pytest.fixture
async def small(make_server: ServerFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(make_server(max_body_bytes=200)) as client:
        yield client


def body_of(size: int) -> bytes:
    """A valid run request of exactly ``size`` bytes."""
    head, tail = b'{"kwargs": {"name": "', b'"}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


async def test_bodies_over_the_bound_are_413(small: httpx.AsyncClient) -> None:
    headers = {"Content-Type": "application/json"}
    at_limit = await small.post("/workflows/greet/run", content=body_of(200), headers=headers)
    assert at_limit.status_code == 200
    over = await small.post("/workflows/greet/run", content=body_of(201), headers=headers)
    assert over.status_code == 413
    assert "200 bytes" in over.json()["detail"]
    names = [h["handler_id"] for h in (await small.get("/handlers")).json()["handlers"]]
    assert len(names) == 1  # the refused request started nothing


async def test_chunked_bodies_are_bounded_too(small: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 50  # no Content-Length: the bound is counted as it arrives

    response = await small.post("/events/any", content=chunks())
    assert response.status_code == 413


async def test_the_key_is_checked_before_the_body(make_server: ServerFactory) -> None:
    async with asgi_client(make_server(api_key=KEY, max_body_bytes=10)) as client:
        response = await client.post("/workflows/greet/run", content=b"x" * 100)
    assert response.status_code == 401


# --- decoding never imports ------------------------------------------------------------------


TRIPWIRE = "tests.server.import_tripwire"


@pytest.mark.parametrize(
    "qualified_name", [f"{TRIPWIRE}.Tripwire", f"{TRIPWIRE}.TripwireResponse", "os.system"]
)
async def test_qualified_names_are_never_imported(
    client: httpx.AsyncClient, qualified_name: str
) -> None:
    assert TRIPWIRE not in sys.modules
    envelope = {"qualified_name": qualified_name, "value": {}}
    start = await client.post("/workflows/greet/run-nowait", json={"start_event": envelope})
    assert start.status_code == 400
    assert "not declared by this workflow" in start.json()["detail"]

    asking = await client.post("/workflows/ask/run-nowait", json={})
    handler_id = asking.json()["handler_id"]
    sent = await client.post(f"/events/{handler_id}", json={"event": envelope})
    assert sent.status_code == 400
    assert TRIPWIRE not in sys.modules
    assert (await client.get(f"/handlers/{handler_id}")).json()["status"] == "running"


async def test_a_declared_name_picks_the_declared_class(engine: Engine) -> None:
    """Two declared classes share a name: the qualified name chooses between them."""

    class Approval(flows.Approval):  # the same class name, another class
        pass

    server = WorkflowServer(engine=engine, api_key="")
    server.add_workflow(
        "gate", flows.Gate(engine=engine), additional_events=[flows.Approval, Approval]
    )
    async with asgi_client(server) as client:
        handler_id = (await client.post("/workflows/gate/run-nowait", json={})).json()["handler_id"]
        ambiguous = {"type": "Approval", "value": {"approved": True}}
        response = await client.post(f"/events/{handler_id}", json={"event": ambiguous})
        assert response.status_code == 400
        assert "ambiguous" in response.json()["detail"]
        chosen = {**ambiguous, "qualified_name": "tests.server.server_workflows.Approval"}
        response = await client.post(f"/events/{handler_id}", json={"event": chosen})
        assert response.status_code == 200

        async def approved() -> bool:
            result = await client.get(f"/results/{handler_id}")
            return result.status_code == 200 and result.json()["result"] == "approved"

        await eventually(approved, what="the gate to open")
