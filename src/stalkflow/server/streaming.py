"""A run's events over HTTP: ``GET /events/{id}`` streams them, ``POST /events/{id}`` sends one.

The stream is read from the Store, from a cursor, so any number of readers,
on any number of server processes, follow one run independently and resume
where they stopped:

- ``after_sequence``: ``now`` (the default: only events from now on), ``-1``
  (from the beginning) or ``N`` (after sequence ``N``); in SSE mode a
  ``Last-Event-ID`` header takes precedence.
- Server-Sent Events (``sse=true``, the default) frame each event as
  ``id: <sequence>\\ndata: <envelope>\\n\\n`` and send a ``: heartbeat`` comment
  when nothing was sent for ``sse_heartbeat_interval`` seconds; ``sse=false``
  gives one JSON envelope a line (NDJSON), without heartbeats.
- The stream ends after the run's StopEvent (or its timeout, cancellation or
  failure event). A finished run with nothing after the cursor answers 204.
- Internal events (``StepStateChanged`` ...) only with ``include_internal=true``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response, StreamingResponse

from stalkflow.errors import RunFinishedError, RunNotFoundError, WorkflowRuntimeError
from stalkflow.events import InternalDispatchEvent, StopEvent
from stalkflow.ports import StreamEntry
from stalkflow.server.api import json_body, read_body
from stalkflow.server.envelope import EnvelopeError, envelope_of
from stalkflow.server.models import SendEventRequest, SendEventResponse
from stalkflow.server.service import Service

__all__ = ["build_router", "parse_after_sequence"]

HEARTBEAT = ": heartbeat\n\n"


def parse_after_sequence(value: str) -> int | None:
    """``now`` is None; otherwise an integer of at least -1.

    Raises:
        HTTPException: 400 for anything else.
    """
    if value.strip().lower() == "now":
        return None
    try:
        cursor = int(value)
    except ValueError:
        cursor = -2
    if cursor < -1:
        raise HTTPException(
            status_code=400,
            detail=f"Invalid after_sequence: '{value}' (use 'now', -1 or a sequence number)",
        )
    return cursor


def _truthy(value: str) -> bool:
    return value.strip().lower() == "true"


async def stream_entries(
    service: Service, run_id: str, after: int, poll_s: float
) -> AsyncIterator[StreamEntry | None]:
    """The run's entries after ``after``, ending after its StopEvent or its end.

    Yields None whenever ``poll_s`` passed with nothing new, so that the caller
    can send a heartbeat; the run's deadline is enforced at those moments.
    """
    store = service.engine.store
    cursor = after
    while True:
        batch = await store.read_stream(run_id, cursor, poll_s)
        if not batch:
            run = await store.get_run(run_id)
            if run is None:
                return
            if not run.finished:
                try:
                    await service.engine.wait(run_id, 0)  # times out a run past its deadline
                except RunNotFoundError:
                    return  # expired from the store meanwhile
                yield None
                continue
            batch = await store.read_stream(run_id, cursor, 0)
            if not batch:
                return
        for entry in batch:
            cursor = entry.sequence
            yield entry
            if isinstance(entry.event, StopEvent):
                return


async def _frames(
    entries: AsyncIterator[StreamEntry | None],
    *,
    sse: bool,
    heartbeat_s: float | None,
    include_internal: bool,
    include_qualified_name: bool,
) -> AsyncIterator[str]:
    last_sent = time.monotonic()
    async for entry in entries:
        if entry is None:
            if heartbeat_s is not None and time.monotonic() - last_sent >= heartbeat_s:
                last_sent = time.monotonic()
                yield HEARTBEAT
            continue
        if isinstance(entry.event, InternalDispatchEvent) and not include_internal:
            continue
        envelope = envelope_of(entry.event, include_qualified_name=include_qualified_name)
        payload = envelope.model_dump_json()
        last_sent = time.monotonic()
        yield f"id: {entry.sequence}\ndata: {payload}\n\n" if sse else f"{payload}\n"


def build_router(service: Service) -> APIRouter:
    """The event routes, reading and writing through ``service``."""
    router = APIRouter()

    @router.get(
        "/events/{handler_id}",
        response_model=None,
        responses={204: {"description": "Finished, and every event consumed"}, 400: {}, 404: {}},
    )
    async def stream_events(
        handler_id: str,
        request: Request,
        sse: str = "true",
        include_internal: str = "false",
        after_sequence: str = "now",
        include_qualified_name: str = "true",
    ) -> Response:
        as_sse = _truthy(sse)
        cursor = parse_after_sequence(after_sequence)
        last_event_id = request.headers.get("last-event-id")
        if as_sse and last_event_id is not None:
            with contextlib.suppress(ValueError):  # not one of our ids: keep after_sequence
                cursor = max(-1, int(last_event_id))
        await service.load_run(handler_id)
        store = service.engine.store
        if cursor is None:
            existing = await store.read_stream(handler_id, -1, 0)
            cursor = existing[-1].sequence if existing else -1
        if not await store.read_stream(handler_id, cursor, 0):
            run = await store.get_run(handler_id)
            if run is None or run.finished:
                return Response(status_code=204)
        heartbeat_s = service.options.sse_heartbeat_interval if as_sse else None
        poll_s = service.options.stream_poll_s
        if heartbeat_s is not None:
            poll_s = min(poll_s, heartbeat_s)
        frames = _frames(
            stream_entries(service, handler_id, cursor, poll_s),
            sse=as_sse,
            heartbeat_s=heartbeat_s,
            include_internal=_truthy(include_internal),
            include_qualified_name=_truthy(include_qualified_name),
        )
        if as_sse:
            return StreamingResponse(
                frames,
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return StreamingResponse(frames, media_type="application/x-ndjson")

    @router.post(
        "/events/{handler_id}",
        response_model=SendEventResponse,
        responses={400: {}, 404: {}, 409: {"description": "The run has finished"}, 422: {}},
        openapi_extra=json_body(SendEventRequest),
    )
    async def send_event(handler_id: str, request: Request) -> SendEventResponse:
        """Send an event (a human's response ...) into a running run, optionally to one step."""
        body = await read_body(request, SendEventRequest)
        if not body.event:
            raise HTTPException(status_code=400, detail="Event data is required")
        run, served = await service.load_run(handler_id)
        if run.finished:
            raise HTTPException(status_code=409, detail="Workflow already completed")
        try:
            event = served.catalog.parse(body.event)
        except EnvelopeError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        try:
            await service.engine.send_event(handler_id, event, body.step)
        except RunFinishedError:
            raise HTTPException(status_code=409, detail="Workflow already completed") from None
        except RunNotFoundError:
            raise HTTPException(status_code=404, detail="Handler not found") from None
        except WorkflowRuntimeError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        return SendEventResponse()

    return router
