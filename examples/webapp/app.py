"""A web app on stalkflow: submit an expense, watch its run live, approve it from the page.

The app only submits runs and reads them, with stalkflow's synchronous API:
``expense_approval.submit(...)`` starts a run, and any later request reattaches
to it by id with ``stalkflow.get_run(run_id)`` to read its status, stream its
events (``.events()``) or answer it (``.send_event(HumanResponseEvent(...))``).
So it runs either way:

- embedded (no configuration): the steps run in this process, on stalkflow's
  background loop; serve it with one process::

      uvicorn examples.webapp.app:app --port 8000      # from the repository root

- distributed: with ``STALKFLOW_REDIS_URL`` set, Celery workers run the steps
  (``STALKFLOW_WORKFLOWS=examples.webapp.workflow``), and any number of web
  processes serve the same runs (``docker compose up``: the ``web`` service).

Routes:
    GET  /                      the page
    POST /runs                  {"description": str, "amount": number} -> 201 {"run_id"}
    GET  /runs/{id}             {"run_id", "status", "result", "error"}
    GET  /runs/{id}/events      Server-Sent Events, one per streamed event, ``data:``
                                {"type": class name, "data": fields}; resumable with
                                Last-Event-ID; ends after the StopEvent
    POST /runs/{id}/answer      {"response": str} -> 202: the person's answer

A real app puts its own authentication in front of these routes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from examples.webapp.workflow import ExpenseSubmitted, expense_approval
from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel, Field

from stalkflow import RunHandle, get_run
from stalkflow.errors import RunFinishedError, RunNotFoundError, WorkflowRuntimeError
from stalkflow.events import Event, HumanResponseEvent, event_to_payload

PAGE = Path(__file__).with_name("index.html")
RUN_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

app = FastAPI(title="stalkflow web app example")


class NewExpense(BaseModel):
    description: str = Field(min_length=1, max_length=200)
    amount: float = Field(gt=0, le=1_000_000)


class Answer(BaseModel):
    response: str = Field(min_length=1, max_length=500)


def _run(run_id: str) -> RunHandle:
    """The run named ``run_id``, from any process that reaches the store; 404 if none."""
    if not RUN_ID.match(run_id):
        raise HTTPException(404, "No such run")
    try:
        return get_run(run_id)
    except RunNotFoundError:
        raise HTTPException(404, "No such run") from None


def _fields(event: Event) -> dict[str, Any]:
    """An event's data as JSON: declared fields and dynamic keys side by side."""
    payload = event_to_payload(event)
    extra = payload.pop("_data", None)
    if isinstance(extra, dict):
        payload.update(extra)
    return payload


# Plain ``def`` routes: FastAPI runs them in its thread pool, where stalkflow's
# synchronous API may block.


@app.get("/", response_class=HTMLResponse)
def page() -> str:
    return PAGE.read_text(encoding="utf-8")


@app.post("/runs", status_code=201)
def submit(expense: NewExpense) -> dict[str, str]:
    start = ExpenseSubmitted(description=expense.description, amount=expense.amount)
    handle = expense_approval.submit(start_event=start)
    return {"run_id": handle.run_id}


@app.get("/runs/{run_id}")
def status(run_id: str) -> dict[str, Any]:
    handle = _run(run_id)
    state = handle.status
    result: Any = None
    error: str | None = None
    if state != "running":
        try:
            result = handle.get(timeout=5)
        except Exception as exc:  # the run's own error, re-raised
            error = f"{type(exc).__name__}: {exc}"
    return {"run_id": run_id, "status": state, "result": result, "error": error}


@app.get("/runs/{run_id}/events")
def events(run_id: str, last_event_id: Annotated[str | None, Header()] = None) -> StreamingResponse:
    """The run's events as SSE; the ``id`` is the event's position in the stream."""
    handle = _run(run_id)
    skip = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0

    def frames() -> Iterator[str]:
        yield "retry: 1000\n\n"
        for number, event in enumerate(handle.events(), start=1):
            if number <= skip:
                continue
            data = json.dumps({"type": type(event).__name__, "data": _fields(event)})
            yield f"id: {number}\ndata: {data}\n\n"

    return StreamingResponse(
        frames(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


@app.post("/runs/{run_id}/answer", status_code=202)
def answer(run_id: str, body: Answer) -> dict[str, str]:
    handle = _run(run_id)
    try:
        handle.send_event(HumanResponseEvent(response=body.response))
    except RunFinishedError:
        raise HTTPException(409, "This run has already finished") from None
    except WorkflowRuntimeError as exc:
        raise HTTPException(409, str(exc)) from None
    return {"status": "sent"}
