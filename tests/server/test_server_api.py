"""The workflow and handler routes of ``stalkflow.server``, over ASGI on the embedded engine."""

from __future__ import annotations

import json

import httpx
import pytest
from tests.server import server_workflows as flows
from tests.server._helpers import ServerFactory, asgi_client, eventually

import stalkflow
from stalkflow.adapters.local_transport import LocalTransport
from stalkflow.adapters.memory_store import MemoryStore
from stalkflow.core.runs import RunRecord
from stalkflow.engine import Engine
from stalkflow.errors import EventCodecError, StoreUnavailableError
from stalkflow.server import WorkflowServer

HANDLER_KEYS = {
    "handler_id",
    "workflow_name",
    "run_id",
    "error",
    "result",
    "status",
    "started_at",
    "updated_at",
    "completed_at",
}


async def start(client: httpx.AsyncClient, name: str, **body: object) -> str:
    response = await client.post(f"/workflows/{name}/run-nowait", json=body)
    assert response.status_code == 200, response.text
    handler_id: str = response.json()["handler_id"]
    return handler_id


async def finished(client: httpx.AsyncClient, handler_id: str) -> httpx.Response:
    async def done() -> bool:
        return (await client.get(f"/handlers/{handler_id}")).status_code != 202

    await eventually(done, what=f"handler {handler_id} to finish")
    return await client.get(f"/handlers/{handler_id}")


# --- service routes ---------------------------------------------------------------------


async def test_health_is_healthy(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy"}


async def test_lists_the_served_workflows_by_their_names(client: httpx.AsyncClient) -> None:
    response = await client.get("/workflows")
    assert response.status_code == 200
    assert response.json() == {"workflows": ["greet", "fail", "ask", "chatty", "shop", "gate"]}


async def test_schema_gives_start_and_stop_event_schemas(client: httpx.AsyncClient) -> None:
    response = await client.get("/workflows/shop/schema")
    assert response.status_code == 200
    body = response.json()
    assert body["start"]["title"] == "Order"
    assert body["start"]["required"] == ["item"]
    assert body["stop"]["title"] == "Receipt"


async def test_events_lists_workflow_events_and_additional_ones(
    client: httpx.AsyncClient,
) -> None:
    chatty = (await client.get("/workflows/chatty/events")).json()["events"]
    assert {schema["title"] for schema in chatty} == {
        "StartEvent",
        "InputRequiredEvent",
        "HumanResponseEvent",
        "StopEvent",
    }
    gate = (await client.get("/workflows/gate/events")).json()["events"]
    assert "Approval" in {schema["title"] for schema in gate}


async def test_representation_is_the_workflow_graph(client: httpx.AsyncClient) -> None:
    response = await client.get("/workflows/ask/representation")
    assert response.status_code == 200
    graph = response.json()["graph"]
    steps = {node["id"] for node in graph["nodes"] if node["node_type"] == "step"}
    assert steps == {"ask", "answer"}
    assert {"source": "HumanResponseEvent", "target": "answer", "label": None} in graph["edges"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/workflows/nope/run"),
        ("POST", "/workflows/nope/run-nowait"),
        ("GET", "/workflows/nope/schema"),
        ("GET", "/workflows/nope/events"),
        ("GET", "/workflows/nope/representation"),
        ("GET", "/handlers/nope"),
        ("POST", "/handlers/nope/cancel"),
        ("GET", "/results/nope"),
        ("GET", "/events/nope"),
    ],
)
async def test_unknown_workflows_and_handlers_are_404(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path, json={} if method == "POST" else None)
    assert response.status_code == 404
    assert "not found" in response.json()["detail"]


async def test_only_served_workflows_start_even_if_the_engine_knows_others(
    engine: Engine, client: httpx.AsyncClient
) -> None:
    # The engine registry knows this workflow by its full name; the server does not serve it.
    stalkflow.distributed.register(
        flows.Chatty(engine=engine, workflow_name="hidden"), engine=engine
    )
    response = await client.post("/workflows/hidden/run-nowait", json={})
    assert response.status_code == 404
    assert (await client.get("/handlers")).json() == {"handlers": []}


# --- running --------------------------------------------------------------------------


async def test_run_waits_and_returns_the_completed_handler(client: httpx.AsyncClient) -> None:
    response = await client.post("/workflows/greet/run", json={"kwargs": {"name": "Ada"}})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == HANDLER_KEYS
    assert body["status"] == "completed"
    assert body["workflow_name"] == "greet"
    assert body["run_id"] == body["handler_id"]
    assert body["error"] is None
    assert body["result"] == {
        "value": {"result": "hello Ada"},
        "type": "StopEvent",
        "types": None,
        "qualified_name": "stalkflow.events.StopEvent",
    }
    assert body["started_at"] <= body["updated_at"] == body["completed_at"]


@pytest.mark.parametrize(
    "start_event",
    [
        {"name": "Bo"},  # the start event's fields
        json.dumps({"name": "Bo"}),  # the same as JSON text
        {"type": "StartEvent", "value": {"_data": {"name": "Bo"}}},  # an envelope
        {"qualified_name": "workflows.events.StartEvent", "value": {"name": "Bo"}},  # upstream's
    ],
)
async def test_run_accepts_the_start_event_in_every_upstream_form(
    client: httpx.AsyncClient, start_event: object
) -> None:
    response = await client.post("/workflows/greet/run", json={"start_event": start_event})
    assert response.status_code == 200, response.text
    assert response.json()["result"]["value"]["result"] == "hello Bo"


async def test_start_event_wins_over_kwargs(client: httpx.AsyncClient) -> None:
    body = {"start_event": {"name": "event"}, "kwargs": {"name": "kwargs"}}
    response = await client.post("/workflows/greet/run", json=body)
    assert response.json()["result"]["value"]["result"] == "hello event"


async def test_typed_start_event_and_stop_event_subclass(client: httpx.AsyncClient) -> None:
    body = {"start_event": {"item": "tea", "quantity": 2}}
    response = await client.post("/workflows/shop/run", json=body)
    assert response.status_code == 200
    assert response.json()["result"] == {
        "value": {"line": "2 x tea", "total_sold": 2},
        "type": "Receipt",
        "types": ["StopEvent"],
        "qualified_name": "tests.server.server_workflows.Receipt",
    }


@pytest.mark.parametrize("body", [{}, {"start_event": {}}, {"start_event": {"quantity": "x"}}])
async def test_invalid_start_event_is_400(client: httpx.AsyncClient, body: object) -> None:
    response = await client.post("/workflows/shop/run", json=body)
    assert response.status_code == 400
    assert "Validation error for 'start_event'" in response.json()["detail"]
    assert (await client.get("/handlers", params={"workflow_name": "shop"})).json() == {
        "handlers": []
    }


async def test_start_event_of_another_type_is_400(client: httpx.AsyncClient) -> None:
    body = {"start_event": {"type": "StopEvent", "value": {}}}
    response = await client.post("/workflows/greet/run", json=body)
    assert response.status_code == 400
    assert "Start event must be an instance of" in response.json()["detail"]


async def test_failed_run_is_500_with_its_error(client: httpx.AsyncClient) -> None:
    response = await client.post("/workflows/fail/run", json={"kwargs": {"why": "testing"}})
    assert response.status_code == 500
    body = response.json()
    assert body["status"] == "failed"
    assert body["error"] == "boom: testing"
    assert body["result"] is None


async def test_run_nowait_returns_a_running_handler(client: httpx.AsyncClient) -> None:
    response = await client.post("/workflows/ask/run-nowait", json={})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "running"
    assert body["result"] is None
    assert body["completed_at"] is None
    assert len(body["handler_id"]) == 10


async def test_run_nowait_with_a_chosen_handler_id(client: httpx.AsyncClient) -> None:
    handler_id = await start(client, "ask", handler_id="my-run-1")
    assert handler_id == "my-run-1"
    again = await client.post("/workflows/ask/run-nowait", json={"handler_id": "my-run-1"})
    assert again.status_code == 409
    assert "already running" in again.json()["detail"]


async def test_handler_id_of_a_finished_run_continues_its_state(
    client: httpx.AsyncClient,
) -> None:
    first = await client.post("/workflows/shop/run", json={"start_event": {"item": "a"}})
    first_id = first.json()["handler_id"]
    body = {"handler_id": first_id, "start_event": {"item": "b", "quantity": 3}}
    second = await client.post("/workflows/shop/run", json=body)
    assert second.status_code == 200
    second_id = second.json()["handler_id"]
    assert second_id != first_id  # a new run; run ids are never reused
    assert second.json()["result"]["value"]["total_sold"] == 4  # 1 sold before, 3 now


async def test_context_is_refused_unless_enabled(client: httpx.AsyncClient) -> None:
    response = await client.post("/workflows/greet/run", json={"context": {"state": {}}})
    assert response.status_code == 400
    assert "Context API is disabled" in response.json()["detail"]


async def test_empty_context_from_upstreams_client_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post("/workflows/greet/run", json={"context": {}})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (b'{"kwargs": "not an object"}', 422),
        (b'{"handler_id": "../../etc"}', 422),
    ],
)
async def test_malformed_bodies_are_4xx_with_detail(
    client: httpx.AsyncClient, content: bytes, code: int
) -> None:
    response = await client.post(
        "/workflows/greet/run-nowait",
        content=content,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == code
    assert response.json()["detail"]


# --- handlers ---------------------------------------------------------------------------


async def test_handler_status_codes_follow_the_run(client: httpx.AsyncClient) -> None:
    asking = await start(client, "ask")
    running = await client.get(f"/handlers/{asking}")
    assert running.status_code == 202
    assert running.json()["status"] == "running"

    greeting = await start(client, "greet", kwargs={"name": "x"})
    assert (await finished(client, greeting)).status_code == 200

    failing = await start(client, "fail")
    failed = await finished(client, failing)
    assert failed.status_code == 500
    assert failed.json()["status"] == "failed"


async def test_a_timed_out_run_is_failed_to_clients(engine: Engine) -> None:
    server = WorkflowServer(engine=engine, api_key="")
    server.add_workflow("slow", flows.Asker(engine=engine, timeout=0.2))
    async with asgi_client(server) as client:
        handler_id = await start(client, "slow")
        response = await finished(client, handler_id)
    assert response.status_code == 500
    assert response.json()["status"] == "failed"
    assert "timed out" in response.json()["error"]


async def test_handlers_are_listed_and_filtered(client: httpx.AsyncClient) -> None:
    asking = await start(client, "ask")
    greeting = await start(client, "greet")
    failing = await start(client, "fail")
    await finished(client, greeting)
    await finished(client, failing)

    async def ids(**params: object) -> list[str]:
        response = await client.get("/handlers", params=params)
        assert response.status_code == 200
        return [handler["handler_id"] for handler in response.json()["handlers"]]

    assert await ids() == [asking, greeting, failing]  # oldest first
    assert await ids(status="running") == [asking]
    assert await ids(status=["completed", "failed"]) == [greeting, failing]
    assert await ids(workflow_name="greet") == [greeting]
    assert await ids(workflow_name=["greet", "ask"], status="running") == [asking]
    assert await ids(status="no-such-status") == []
    assert await ids(workflow_name="unknown") == []


async def test_handlers_come_from_the_store_not_the_server(
    make_server: ServerFactory, engine: Engine
) -> None:
    """A second server on the same engine answers for runs the first one started."""
    async with asgi_client(make_server()) as first, asgi_client(make_server()) as second:
        handler_id = await start(first, "ask")
        seen = await second.get(f"/handlers/{handler_id}")
        assert seen.status_code == 202
        answer = {"event": {"type": "HumanResponseEvent", "value": {"response": "Cy"}}}
        assert (await second.post(f"/events/{handler_id}", json=answer)).status_code == 200
        done = await finished(first, handler_id)
    assert done.json()["result"]["value"]["result"] == "hi Cy"
    # ...and so does stalkflow itself, since handler ids are run ids
    run = await engine.get_run(handler_id)
    assert run.status.value == "completed"


async def test_results_unwraps_the_result(client: httpx.AsyncClient) -> None:
    greeting = await start(client, "greet", kwargs={"name": "Di"})
    await finished(client, greeting)
    response = await client.get(f"/results/{greeting}")
    assert response.status_code == 200
    assert response.json()["result"] == "hello Di"

    selling = await start(client, "shop", start_event={"item": "pen"})
    await finished(client, selling)
    assert (await client.get(f"/results/{selling}")).json()["result"] == {
        "line": "1 x pen",
        "total_sold": 1,
    }

    asking = await start(client, "ask")
    pending = await client.get(f"/results/{asking}")
    assert pending.status_code == 202
    assert pending.json()["result"] is None


async def test_cancel_a_running_handler(client: httpx.AsyncClient) -> None:
    handler_id = await start(client, "ask")
    response = await client.post(f"/handlers/{handler_id}/cancel")
    assert response.status_code == 200
    assert response.json() == {"status": "cancelled"}
    handler = await client.get(f"/handlers/{handler_id}")
    assert handler.status_code == 500
    assert handler.json()["status"] == "cancelled"
    # cancelling again finds no running handler, as upstream answers
    assert (await client.post(f"/handlers/{handler_id}/cancel")).status_code == 404


async def test_purge_is_refused_and_changes_nothing(client: httpx.AsyncClient) -> None:
    handler_id = await start(client, "ask")
    response = await client.post(f"/handlers/{handler_id}/cancel", params={"purge": "true"})
    assert response.status_code == 501
    assert "purge" in response.json()["detail"]
    assert (await client.get(f"/handlers/{handler_id}")).json()["status"] == "running"


def test_add_workflow_refuses_bad_names_duplicates_and_foreign_engines(engine: Engine) -> None:
    server = WorkflowServer(engine=engine, api_key="")
    server.add_workflow("greet", flows.Greeter(engine=engine))
    with pytest.raises(ValueError, match="already served"):
        server.add_workflow("greet", flows.Greeter(engine=engine))
    with pytest.raises(ValueError, match="Invalid workflow name"):
        server.add_workflow("a/b", flows.Greeter(engine=engine))
    with pytest.raises(ValueError, match="another engine"):
        server.add_workflow("other", flows.Greeter(engine=Engine.embedded()))
    assert list(server.get_workflows()) == ["greet"]


# --- store failures ---------------------------------------------------------------------------


class FlakyStore(MemoryStore):
    """A memory store that can be down, and that holds one run it cannot decode."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def get_run(self, run_id: str) -> RunRecord | None:
        if self.down:
            raise StoreUnavailableError("Redis is unreachable")
        if run_id == "garbled":
            raise EventCodecError("Unknown event type 'gone.Event' for workflow 'x'")
        return await super().get_run(run_id)


async def test_store_failures_are_503_and_unreadable_runs_422() -> None:
    store = FlakyStore()
    engine = Engine(store, LocalTransport())
    server = WorkflowServer(engine=engine, api_key="")
    server.add_workflow("greet", flows.Greeter(engine=engine))
    async with asgi_client(server) as client:
        garbled = await client.get("/handlers/garbled")
        assert garbled.status_code == 422
        assert "cannot be decoded" in garbled.json()["detail"]
        store.down = True
        health = await client.get("/health")
        assert health.status_code == 503
        assert health.json() == {"status": "unhealthy"}
        handler = await client.get("/handlers/any")
        assert handler.status_code == 503
        assert "Redis is unreachable" in handler.json()["detail"]
