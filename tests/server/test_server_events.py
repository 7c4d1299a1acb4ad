"""``GET /events/{id}`` (SSE, NDJSON, cursors, heartbeats) and ``POST /events/{id}`` (HITL)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from tests.server import server_workflows as flows
from tests.server._helpers import ServerFactory, asgi_client, eventually

from stalkflow.engine import Engine
from stalkflow.events import InputRequiredEvent
from stalkflow.server import WorkflowServer

Frame = tuple[int, dict[str, Any]]


def sse_frames(text: str) -> list[Frame]:
    """Parse an SSE body strictly: every block is ``id: N`` then ``data: {...}``."""
    frames = []
    for block in text.split("\n\n"):
        if not block or block == ": heartbeat":
            continue
        id_line, data_line = block.split("\n")
        assert id_line.startswith("id: ") and data_line.startswith("data: "), block
        frames.append((int(id_line[4:]), json.loads(data_line[6:])))
    return frames


async def start(client: httpx.AsyncClient, name: str, **body: object) -> str:
    response = await client.post(f"/workflows/{name}/run-nowait", json=body)
    assert response.status_code == 200, response.text
    handler_id: str = response.json()["handler_id"]
    return handler_id


async def answer(client: httpx.AsyncClient, handler_id: str, response: str) -> None:
    event = {"type": "HumanResponseEvent", "value": {"_data": {"response": response}}}
    sent = await client.post(f"/events/{handler_id}", json={"event": event})
    assert sent.status_code == 200, sent.text
    assert sent.json() == {"status": "sent"}


async def until_asked(engine: Engine, handler_id: str, times: int = 1) -> None:
    """Wait until the run has asked for input ``times`` times.

    Read from the store: over ASGITransport a stream is only seen once it ends.
    """

    async def asked() -> bool:
        entries = await engine.store.read_stream(handler_id, -1, 0)
        return sum(isinstance(e.event, InputRequiredEvent) for e in entries) >= times

    await eventually(asked, what="the run to ask for input")


async def read_while(
    client: httpx.AsyncClient, path: str, actions: Any, **params: Any
) -> httpx.Response:
    """GET ``path`` while ``actions`` (a coroutine) drives the run to its end."""
    reader = asyncio.ensure_future(client.get(path, **params))
    await asyncio.sleep(0.05)  # let the reader take its cursor first
    await actions
    return await asyncio.wait_for(reader, 10)


# --- SSE and NDJSON framing ---------------------------------------------------------------


async def test_sse_frames_a_finished_run_from_the_beginning(client: httpx.AsyncClient) -> None:
    handler_id = await start(client, "greet", kwargs={"name": "Ed"})
    await eventually(lambda: _status_is(client, handler_id, "completed"), what="completion")
    response = await client.get(f"/events/{handler_id}", params={"after_sequence": "-1"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = sse_frames(response.text)
    ids = [frame_id for frame_id, _ in frames]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [envelope["type"] for _, envelope in frames] == [
        "Progress",
        "Progress",
        "Progress",
        "StopEvent",
    ]
    assert [envelope["value"] for _, envelope in frames[:3]] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert frames[-1][1] == {
        "value": {"result": "hello Ed"},
        "qualified_name": "stalkflow.events.StopEvent",
        "type": "StopEvent",
        "types": None,
    }


async def test_internal_events_and_qualified_names_on_request(client: httpx.AsyncClient) -> None:
    handler_id = await start(client, "greet")
    await eventually(
        lambda: _status_is(client, handler_id, "completed"), what="the run to complete"
    )
    default = sse_frames(
        (await client.get(f"/events/{handler_id}", params={"after_sequence": "-1"})).text
    )
    everything = sse_frames(
        (
            await client.get(
                f"/events/{handler_id}",
                params={
                    "after_sequence": "-1",
                    "include_internal": "true",
                    "include_qualified_name": "false",
                },
            )
        ).text
    )
    internal = [env for _, env in everything if env["type"] == "StepStateChanged"]
    assert internal and all(env["types"] == ["InternalDispatchEvent"] for env in internal)
    assert all(env["type"] != "StepStateChanged" for _, env in default)
    assert all(env["qualified_name"] is None for _, env in everything)
    # the ids of the events shown by default are the same in both streams
    assert {i for i, _ in default} <= {i for i, _ in everything}


async def _status_is(client: httpx.AsyncClient, handler_id: str, status: str) -> bool:
    return (await client.get(f"/handlers/{handler_id}")).json()["status"] == status


async def test_ndjson_gives_one_envelope_a_line(client: httpx.AsyncClient) -> None:
    handler_id = await start(client, "greet")
    await eventually(lambda: _status_is(client, handler_id, "completed"), what="completion")
    response = await client.get(
        f"/events/{handler_id}", params={"sse": "false", "after_sequence": "-1"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = response.text.splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["Progress"] * 3 + ["StopEvent"]
    assert response.text.endswith("\n") and "id:" not in response.text


# --- cursors --------------------------------------------------------------------------------


async def test_finished_and_consumed_is_204(client: httpx.AsyncClient) -> None:
    handler_id = await start(client, "greet")
    await eventually(lambda: _status_is(client, handler_id, "completed"), what="completion")
    path = f"/events/{handler_id}"
    assert (await client.get(path)).status_code == 204  # "now" is after everything
    last_id = sse_frames((await client.get(path, params={"after_sequence": "-1"})).text)[-1][0]
    assert (await client.get(path, params={"after_sequence": str(last_id)})).status_code == 204
    resumed = await client.get(path, headers={"Last-Event-ID": str(last_id)})
    assert resumed.status_code == 204
    # NDJSON ignores Last-Event-ID (an SSE header) and follows after_sequence
    ndjson = await client.get(
        path, params={"sse": "false", "after_sequence": "-1"}, headers={"Last-Event-ID": "999"}
    )
    assert ndjson.status_code == 200 and ndjson.text.count("\n") == 4


@pytest.mark.parametrize("after", ["abc", "-2", "1.5", ""])
async def test_bad_after_sequence_is_400(client: httpx.AsyncClient, after: str) -> None:
    handler_id = await start(client, "ask")
    response = await client.get(f"/events/{handler_id}", params={"after_sequence": after})
    assert response.status_code == 400
    assert "after_sequence" in response.json()["detail"]


async def test_now_streams_only_what_comes_after_the_request(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    handler_id = await start(client, "chatty")
    await until_asked(engine, handler_id)
    response = await read_while(client, f"/events/{handler_id}", answer(client, handler_id, "stop"))
    assert [envelope["type"] for _, envelope in sse_frames(response.text)] == ["StopEvent"]


async def test_concurrent_readers_resume_from_last_event_id(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    """Three readers follow one live run; the ones given Last-Event-ID get exactly the rest."""
    handler_id = await start(client, "chatty")
    path = f"/events/{handler_id}"
    internal = {"include_internal": "true"}

    async def drive() -> None:
        for asked, response in enumerate(["1", "2", "stop"], start=1):
            await until_asked(engine, handler_id, asked)
            await answer(client, handler_id, response)

    readers = [
        client.get(path, params={**internal, "after_sequence": "-1"}),
        client.get(
            path, params={**internal, "after_sequence": "-1"}, headers={"Last-Event-ID": "1"}
        ),
        client.get(
            path, params={**internal, "after_sequence": "0"}, headers={"Last-Event-ID": "4"}
        ),
    ]
    tasks = [asyncio.ensure_future(reader) for reader in readers]
    await asyncio.sleep(0.05)
    await drive()
    full, from_1, from_4 = (sse_frames(r.text) for r in await asyncio.gather(*tasks))

    assert [i for i, _ in full] == list(range(len(full)))  # every sequence, in order
    assert [env["value"].get("n") for _, env in full if env["type"] == "Progress"] == [0, 1, 2]
    assert full[-1][1]["value"] == {"result": "done"}
    assert from_1 == [frame for frame in full if frame[0] > 1]
    assert from_4 == [frame for frame in full if frame[0] > 4]


async def test_sse_heartbeats_while_the_run_is_silent(
    make_server: ServerFactory, engine: Engine
) -> None:
    async with asgi_client(make_server(sse_heartbeat_interval=0.05)) as client:
        handler_id = await start(client, "ask")
        await until_asked(engine, handler_id)

        async def later() -> None:
            await asyncio.sleep(0.4)
            await answer(client, handler_id, "Fay")

        path = f"/events/{handler_id}"
        sse, ndjson = await asyncio.gather(
            read_while(client, path, later(), params={"after_sequence": "-1"}),
            client.get(path, params={"after_sequence": "-1", "sse": "false"}),
        )
    blocks = [block for block in sse.text.split("\n\n") if block]
    heartbeats = [i for i, block in enumerate(blocks) if block == ": heartbeat"]
    assert len(heartbeats) >= 3
    asked = next(i for i, block in enumerate(blocks) if "InputRequiredEvent" in block)
    assert asked < heartbeats[0] and heartbeats[-1] < len(blocks) - 1
    assert "hi Fay" in blocks[-1]
    assert "heartbeat" not in ndjson.text


async def test_no_heartbeats_when_disabled(make_server: ServerFactory, engine: Engine) -> None:
    async with asgi_client(make_server(sse_heartbeat_interval=None, stream_poll_s=0.05)) as client:
        handler_id = await start(client, "ask")
        await until_asked(engine, handler_id)

        async def later() -> None:
            await asyncio.sleep(0.3)
            await answer(client, handler_id, "Gus")

        sse = await read_while(client, f"/events/{handler_id}", later())
    assert "heartbeat" not in sse.text
    assert [env["type"] for _, env in sse_frames(sse.text)] == ["StopEvent"]


# --- sending events (human in the loop) ------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        {"type": "HumanResponseEvent", "value": {"_data": {"response": "Hal"}}},
        {"type": "HumanResponseEvent", "value": {"response": "Hal"}},
        {"qualified_name": "workflows.events.HumanResponseEvent", "value": {"response": "Hal"}},
        {"type": "HumanResponseEvent", "data": {"response": "Hal"}},  # legacy "data"
        json.dumps({"type": "HumanResponseEvent", "value": {"response": "Hal"}}),
    ],
)
async def test_human_response_completes_the_run(client: httpx.AsyncClient, event: object) -> None:
    handler_id = await start(client, "ask")
    response = await client.post(f"/events/{handler_id}", json={"event": event})
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "sent"}
    await eventually(lambda: _status_is(client, handler_id, "completed"), what="completion")
    result = (await client.get(f"/handlers/{handler_id}")).json()["result"]
    assert result["value"]["result"] == "hi Hal"


async def test_event_to_a_named_step(client: httpx.AsyncClient) -> None:
    handler_id = await start(client, "ask")
    event = {"type": "HumanResponseEvent", "value": {"response": "Ida"}}
    wrong = await client.post(f"/events/{handler_id}", json={"event": event, "step": "nope"})
    assert wrong.status_code == 400
    assert "nope" in wrong.json()["detail"]
    right = await client.post(f"/events/{handler_id}", json={"event": event, "step": "answer"})
    assert right.status_code == 200
    await eventually(lambda: _status_is(client, handler_id, "completed"), what="completion")


async def test_additional_events_reach_wait_for_event(client: httpx.AsyncClient) -> None:
    handler_id = await start(client, "gate")
    event = {"type": "Approval", "value": {"approved": True}}
    assert (await client.post(f"/events/{handler_id}", json={"event": event})).status_code == 200
    await eventually(lambda: _status_is(client, handler_id, "completed"), what="completion")
    assert (await client.get(f"/results/{handler_id}")).json()["result"] == "approved"


async def test_undeclared_event_types_are_refused(engine: Engine) -> None:
    server = WorkflowServer(engine=engine, api_key="")
    server.add_workflow("gate", flows.Gate(engine=engine))  # no additional_events
    async with asgi_client(server) as client:
        handler_id = await start(client, "gate")
        event = {"type": "Approval", "value": {"approved": True}}
        response = await client.post(f"/events/{handler_id}", json={"event": event})
    assert response.status_code == 400
    assert "Invalid event type: Approval" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({}, "Event data is required"),
        ({"event": None}, "Event data is required"),
        ({"event": "not json"}, "Must be a json object"),
        ({"event": {"value": {}}}, "Must have a type or a qualified name"),
        ({"event": {"type": "Approval", "value": {"approved": "maybe"}}}, "Failed to deserialize"),
        ({"event": {"type": "Approval", "value": []}}, "'value' must be an object"),
    ],
)
async def test_bad_events_are_400(client: httpx.AsyncClient, body: object, detail: str) -> None:
    handler_id = await start(client, "gate")
    response = await client.post(f"/events/{handler_id}", json=body)
    assert response.status_code == 400
    assert detail in response.json()["detail"]


async def test_events_to_finished_or_unknown_runs(client: httpx.AsyncClient) -> None:
    handler_id = await start(client, "greet")
    await eventually(lambda: _status_is(client, handler_id, "completed"), what="completion")
    event = {"event": {"type": "HumanResponseEvent", "value": {}}}
    finished = await client.post(f"/events/{handler_id}", json=event)
    assert finished.status_code == 409
    assert finished.json()["detail"] == "Workflow already completed"
    unknown = await client.post("/events/nope", json=event)
    assert unknown.status_code == 404
