"""The JSON bodies of the HTTP API, as Pydantic models.

The shapes are those of llama-agents-server (``llama_agents.client.protocol``),
so its ``WorkflowClient`` reads them unchanged. Request models ignore unknown
keys, as upstream does, and bound what they accept (ids, step names).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: A handler's status as upstream reports it. A run that timed out is ``failed``.
HandlerStatus = Literal["running", "completed", "failed", "cancelled"]

#: Ids a client may choose for a run; they become store keys, so they are plain.
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_by_name=True)


class RunRequest(_Request):
    """``POST /workflows/{name}/run`` and ``/run-nowait``.

    ``start_event`` is an envelope (``{"type", "value"}``), a bare object of the
    start event's fields, or either as a JSON string; when absent, ``kwargs``
    are the start event's fields. ``handler_id`` names the new run, or, naming
    a finished run, starts a new run that continues from its state.
    """

    start_event: dict[str, Any] | str | None = None
    # named by its alias: a field called ``kwargs`` confuses the pydantic mypy plugin
    start_kwargs: dict[str, Any] = Field(default_factory=dict, validation_alias="kwargs")
    handler_id: str | None = Field(default=None, pattern=ID_PATTERN)
    context: dict[str, Any] | None = None


class SendEventRequest(_Request):
    """``POST /events/{handler_id}``: an event envelope (or its JSON text), and a target step."""

    event: dict[str, Any] | str | None = None
    step: str | None = Field(default=None, max_length=200)


class EventEnvelope(BaseModel):
    """An event as the API shows it.

    ``value`` is the event's ``model_dump(mode="json")``; ``type`` its class
    name; ``types`` the names of its Event base classes (nearest first, down to
    but excluding ``Event``), or null; ``qualified_name`` is ``module.Class``.
    """

    value: dict[str, Any]
    qualified_name: str | None
    type: str
    types: list[str] | None


class HandlerModel(BaseModel):
    """A run, seen as upstream's "handler"; ``handler_id`` and ``run_id`` are the run's id."""

    handler_id: str
    workflow_name: str
    run_id: str | None
    error: str | None
    result: EventEnvelope | None
    status: HandlerStatus
    started_at: str
    updated_at: str | None
    completed_at: str | None


class HandlersList(BaseModel):
    handlers: list[HandlerModel]


class HealthResponse(BaseModel):
    status: Literal["healthy", "unhealthy"]


class WorkflowsList(BaseModel):
    workflows: list[str]


class SendEventResponse(BaseModel):
    status: Literal["sent"] = "sent"


class CancelResponse(BaseModel):
    status: Literal["deleted", "cancelled"]


class SchemaResponse(BaseModel):
    start: dict[str, Any]
    stop: dict[str, Any]


class EventsSchemaResponse(BaseModel):
    events: list[dict[str, Any]]


class GraphResponse(BaseModel):
    graph: dict[str, Any]


class ErrorResponse(BaseModel):
    detail: Any
