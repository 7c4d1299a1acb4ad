"""The routes about workflows and handlers (runs); events are in ``streaming``.

Paths, bodies and status codes are llama-agents-server's:

- ``GET /health``, ``GET /workflows``
- ``POST /workflows/{name}/run`` (waits; 200 completed, 500 otherwise) and ``/run-nowait``
- ``GET /workflows/{name}/schema``, ``/events``, ``/representation``
- ``GET /handlers`` (``status``, ``workflow_name`` filters), ``GET /handlers/{id}``
  (202 running, 200 completed, 500 failed or cancelled), ``POST /handlers/{id}/cancel``
- ``GET /results/{id}`` (deprecated upstream: the handler with its result unwrapped)
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from stalkflow.core.runs import RunRecord, RunStatus
from stalkflow.errors import BackendError
from stalkflow.representation import get_workflow_representation
from stalkflow.server.models import (
    CancelResponse,
    EventsSchemaResponse,
    GraphResponse,
    HandlersList,
    HealthResponse,
    RunRequest,
    SchemaResponse,
    WorkflowsList,
)
from stalkflow.server.service import Service, unwrapped_result

__all__ = ["build_router", "json_body", "read_body"]

M = TypeVar("M", bound=BaseModel)

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid body or parameters"},
    404: {"description": "Unknown workflow or handler"},
    422: {"description": "The body does not match its schema"},
}


async def read_body(request: Request, model: type[M]) -> M:
    """The request's JSON object as ``model``: 400 if it is not JSON, 422 if it does not fit.

    An empty body is an empty object.
    """
    raw = await request.body()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPException(status_code=400, detail=f"Invalid JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise HTTPException(status_code=400, detail="The body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        detail = exc.errors(include_url=False, include_context=False, include_input=False)
        raise HTTPException(status_code=422, detail=detail) from None


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI text for a body that a route reads with :func:`read_body`."""
    schema = model.model_json_schema()
    return {"requestBody": {"content": {"application/json": {"schema": schema}}}}


def _code(run: RunRecord) -> int:
    if run.status is RunStatus.RUNNING:
        return 202
    return 200 if run.status is RunStatus.COMPLETED else 500


def _list_param(values: list[str] | None) -> list[str] | None:
    cleaned = [value.strip() for value in values or () if value.strip()]
    return cleaned or None


def build_router(service: Service) -> APIRouter:
    """The workflow and handler routes, answering from ``service``."""
    router = APIRouter()

    @router.get("/health", response_model=HealthResponse, responses={503: {}})
    async def health() -> JSONResponse:
        """``healthy`` while the store answers; 503 ``unhealthy`` when it does not."""
        try:
            await service.engine.store.get_run("stalkflow-health-check")
        except BackendError:
            return JSONResponse({"status": "unhealthy"}, status_code=503)
        return JSONResponse({"status": "healthy"})

    @router.get("/workflows", response_model=WorkflowsList)
    async def list_workflows() -> WorkflowsList:
        return WorkflowsList(workflows=service.names())

    @router.post(
        "/workflows/{name}/run",
        responses={**_ERRORS, 500: {}, 409: {}},
        openapi_extra=json_body(RunRequest),
    )
    async def run_workflow(name: str, request: Request) -> JSONResponse:
        """Start a run and wait for its end: 200 with the Handler if it completed, else 500."""
        served = service.served(name)
        body = await read_body(request, RunRequest)
        run_id = await service.start(served, body)
        run = await service.wait(run_id)
        code = 200 if run.status is RunStatus.COMPLETED else 500
        return JSONResponse(service.handler(run).model_dump(), status_code=code)

    @router.post(
        "/workflows/{name}/run-nowait",
        responses={**_ERRORS, 409: {}},
        openapi_extra=json_body(RunRequest),
    )
    async def run_workflow_nowait(name: str, request: Request) -> JSONResponse:
        """Start a run; returns its Handler (status ``running``) at once."""
        served = service.served(name)
        body = await read_body(request, RunRequest)
        run_id = await service.start(served, body)
        run, _ = await service.load_run(run_id)
        return JSONResponse(service.handler(run).model_dump())

    @router.get("/workflows/{name}/schema", response_model=SchemaResponse, responses=_ERRORS)
    async def workflow_schema(name: str) -> SchemaResponse:
        workflow = service.served(name).workflow
        try:
            return SchemaResponse(
                start=workflow.start_event_class.model_json_schema(),
                stop=workflow.stop_event_class.model_json_schema(),
            )
        except Exception as exc:
            raise HTTPException(status_code=500, detail=f"Error getting schemas: {exc}") from None

    @router.get("/workflows/{name}/events", response_model=EventsSchemaResponse, responses=_ERRORS)
    async def workflow_events(name: str) -> EventsSchemaResponse:
        served = service.served(name)
        try:
            return EventsSchemaResponse(events=[e.model_json_schema() for e in served.events])
        except Exception as exc:
            raise HTTPException(status_code=500, detail=f"Error getting schemas: {exc}") from None

    @router.get("/workflows/{name}/representation", response_model=GraphResponse, responses=_ERRORS)
    async def workflow_representation(name: str) -> GraphResponse:
        workflow = service.served(name).workflow
        try:
            graph = get_workflow_representation(workflow)
        except Exception as exc:
            raise HTTPException(
                status_code=500, detail=f"Error while getting JSON workflow representation: {exc}"
            ) from None
        return GraphResponse(graph=graph.model_dump(mode="json"))

    @router.get("/handlers", response_model=HandlersList)
    async def list_handlers(
        status: Annotated[list[str] | None, Query()] = None,
        workflow_name: Annotated[list[str] | None, Query()] = None,
    ) -> HandlersList:
        """Runs of the served workflows, oldest first; filters repeat (``status=a&status=b``)."""
        handlers = await service.list_handlers(_list_param(status), _list_param(workflow_name))
        return HandlersList(handlers=handlers)

    @router.get("/handlers/{handler_id}", responses={**_ERRORS, 202: {}, 500: {}})
    async def get_handler(handler_id: str) -> JSONResponse:
        run, _ = await service.load_run(handler_id)
        return JSONResponse(service.handler(run).model_dump(), status_code=_code(run))

    @router.post(
        "/handlers/{handler_id}/cancel",
        response_model=CancelResponse,
        responses={**_ERRORS, 501: {}},
    )
    async def cancel_handler(handler_id: str, purge: str = "false") -> CancelResponse:
        """Cancel a running run. 404 if unknown or already finished.

        ``purge=true`` (delete the run's record) is refused with 501: the
        store has no delete operation; finished records expire on their own.
        """
        run, _ = await service.load_run(handler_id)
        if purge.lower() == "true":
            raise HTTPException(
                status_code=501,
                detail="purge is not supported: the store keeps finished runs until they "
                "expire; cancel without purge",
            )
        if run.finished or not await service.engine.cancel(handler_id):
            raise HTTPException(status_code=404, detail="Handler not found among running handlers")
        return CancelResponse(status="cancelled")

    @router.get("/results/{handler_id}", responses={**_ERRORS, 202: {}, 500: {}})
    async def get_result(handler_id: str) -> JSONResponse:
        """Deprecated upstream: the Handler, with ``result`` unwrapped."""
        run, _ = await service.load_run(handler_id)
        body = service.handler(run).model_dump()
        body["result"] = unwrapped_result(run)
        return JSONResponse(body, status_code=_code(run))

    return router
