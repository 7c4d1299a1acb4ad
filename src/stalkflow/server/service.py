"""What the routes do: find served workflows, start runs, describe runs as handlers.

The server keeps nothing about runs in memory. A handler id is a run id, and
everything about a run (status, result, events) is read from the engine's
Store, so any number of server processes, and any ``wf.submit()`` caller,
see the same runs. Steps execute on the engine: Celery workers when it is
distributed, the embedded engine's event loop thread otherwise.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from fastapi import HTTPException

from stalkflow.context import Context
from stalkflow.core.ids import new_run_id
from stalkflow.core.runs import RunRecord, RunStatus
from stalkflow.engine import Engine
from stalkflow.errors import (
    ContextSerdeError,
    RunExistsError,
    WorkflowRuntimeError,
    WorkflowValidationError,
)
from stalkflow.events import Event, StartEvent, StopEvent
from stalkflow.server.envelope import EnvelopeError, EventCatalog, envelope_of
from stalkflow.server.models import HandlerModel, HandlerStatus, RunRequest
from stalkflow.submit import background_loop
from stalkflow.workflow import Workflow

__all__ = ["ServedWorkflow", "ServerOptions", "Service", "handler_model", "handler_status"]

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")

_STATUS: dict[RunStatus, HandlerStatus] = {
    RunStatus.RUNNING: "running",
    RunStatus.COMPLETED: "completed",
    RunStatus.FAILED: "failed",
    RunStatus.CANCELLED: "cancelled",
    # upstream's clients know four statuses; a timeout is a failure to them
    RunStatus.TIMED_OUT: "failed",
}


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    """Behaviour switches of one server (see ``WorkflowServer``)."""

    sse_heartbeat_interval: float | None = 25.0
    accept_context_api: bool = False
    #: The longest single wait for new stream entries (deadline checks happen between).
    stream_poll_s: float = 5.0


@dataclasses.dataclass(frozen=True)
class ServedWorkflow:
    """A workflow the server exposes under ``name``, with the events it accepts."""

    name: str
    workflow: Workflow
    additional_events: tuple[type[Event], ...]
    catalog: EventCatalog

    @property
    def events(self) -> list[type[Event]]:
        """The workflow's events and the additional ones, as ``/events`` lists them."""
        events = list(self.workflow.events)
        events.extend(e for e in self.additional_events if e not in events)
        return events


def handler_status(run: RunRecord) -> HandlerStatus:
    return _STATUS[run.status]


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat()


def handler_model(run: RunRecord, name: str) -> HandlerModel:
    """The Handler JSON of ``run``, served under the workflow name ``name``."""
    completed = run.status is RunStatus.COMPLETED
    error = None
    if run.status in (RunStatus.FAILED, RunStatus.TIMED_OUT) and run.error is not None:
        error = run.error.message or run.error.type_name
    return HandlerModel(
        handler_id=run.run_id,
        workflow_name=name,
        run_id=run.run_id,
        error=error,
        result=envelope_of(run.result) if completed and run.result is not None else None,
        status=handler_status(run),
        started_at=_iso(run.created_at),
        updated_at=_iso(run.updated_at),
        completed_at=_iso(run.updated_at) if run.finished else None,
    )


class Service:
    """The served workflows of one server, and what its routes do with runs."""

    def __init__(self, engine: Engine, options: ServerOptions) -> None:
        self.engine = engine
        self.options = options
        self._served: dict[str, ServedWorkflow] = {}
        self._names_by_workflow: dict[str, str] = {}

    # --- workflows --------------------------------------------------------------------

    def add(
        self, name: str, workflow: Workflow, additional_events: Iterable[type[Event]]
    ) -> ServedWorkflow:
        if not _NAME.match(name):
            raise ValueError(
                f"Invalid workflow name {name!r}: use letters, digits, '_', '-' and '.'"
            )
        if name in self._served:
            raise ValueError(f"A workflow is already served under the name {name!r}")
        if not isinstance(workflow, Workflow):
            raise TypeError(f"Not a stalkflow workflow: {workflow!r}")
        if workflow.engine is not self.engine:
            raise ValueError(
                f"Workflow {name!r} runs on another engine than this server's: build it with "
                "Workflow(engine=...) of the server's engine, or give the server none"
            )
        extra = tuple(additional_events)
        for kind in extra:
            if not (isinstance(kind, type) and issubclass(kind, Event)):
                raise TypeError(f"additional_events must be Event classes, not {kind!r}")
        from stalkflow.distributed import register

        register(workflow, engine=self.engine)  # a distributed engine also needs its tasks
        declared = [
            workflow.start_event_class,
            workflow.stop_event_class,
            *workflow.events,
            *extra,
        ]
        served = ServedWorkflow(name, workflow, extra, EventCatalog(declared))
        self._served[name] = served
        self._names_by_workflow.setdefault(workflow.workflow_name, name)
        return served

    def names(self) -> list[str]:
        return list(self._served)

    def served(self, name: str) -> ServedWorkflow:
        found = self._served.get(name)
        if found is None:
            raise HTTPException(status_code=404, detail=f"Workflow '{name}' not found")
        return found

    def served_for(self, run: RunRecord) -> ServedWorkflow | None:
        name = self._names_by_workflow.get(run.workflow)
        return None if name is None else self._served[name]

    # --- runs -------------------------------------------------------------------------

    async def load_run(self, handler_id: str) -> tuple[RunRecord, ServedWorkflow]:
        """The run and its served workflow; 404 for an unknown id or an unserved workflow."""
        run = await self.engine.store.get_run(handler_id)
        served = None if run is None else self.served_for(run)
        if run is None or served is None:
            raise HTTPException(status_code=404, detail="Handler not found")
        return run, served

    def handler(self, run: RunRecord) -> HandlerModel:
        served = self.served_for(run)
        return handler_model(run, served.name if served else run.workflow)

    async def list_handlers(
        self, statuses: Sequence[str] | None, names: Sequence[str] | None
    ) -> list[HandlerModel]:
        wanted = (
            self._served.values()
            if names is None
            else (self._served[n] for n in names if n in self._served)
        )
        by_workflow = {served.workflow.workflow_name: served for served in wanted}
        runs: list[RunRecord] = []
        for workflow_name in by_workflow:
            runs.extend(await self.engine.store.list_runs(workflow=workflow_name))
        if statuses is not None:
            runs = [run for run in runs if handler_status(run) in statuses]
        runs.sort(key=lambda run: (run.created_at, run.run_id))
        return [self.handler(run) for run in runs]

    async def start(self, served: ServedWorkflow, body: RunRequest) -> str:
        """Start a run as ``body`` asks; return its id once it is in the store."""
        start_event = self._start_event(served, body)
        ctx = self._context(served, body)
        run_id = body.handler_id or new_run_id()
        if body.handler_id is not None:
            previous = await self.engine.store.get_run(body.handler_id)
            if previous is not None:
                if not previous.finished:
                    raise HTTPException(
                        status_code=409, detail=f"Handler {body.handler_id!r} is already running"
                    )
                if previous.workflow != served.workflow.workflow_name:
                    raise HTTPException(
                        status_code=409,
                        detail=f"Handler {body.handler_id!r} is a run of another workflow",
                    )
                # A finished run continues in a new run (ids are never reused) with its state.
                run_id = new_run_id()
                if ctx is None:
                    ctx = Context(served.workflow)
                    ctx._attach(self.engine, previous.run_id, None)
        return await self._launch(served.workflow, ctx, start_event, run_id)

    async def _launch(
        self,
        workflow: Workflow,
        ctx: Context[Any] | None,
        start_event: StartEvent | None,
        run_id: str,
    ) -> str:
        async def start() -> str:
            handler = workflow.run(ctx=ctx, start_event=start_event, run_id=run_id)
            await handler._started  # the run is in the store; its steps go on without us
            return handler.run_id

        # Runs start on the process's background loop (as ``wf.submit()`` does), so
        # that the embedded engine's steps outlive the request, and a server
        # shutdown cancels nothing.
        future = asyncio.run_coroutine_threadsafe(start(), background_loop())
        try:
            return await asyncio.wrap_future(future)
        except RunExistsError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        except WorkflowValidationError as exc:
            raise HTTPException(status_code=500, detail=f"Error running workflow: {exc}") from None
        except (WorkflowRuntimeError, ValueError) as exc:
            raise HTTPException(status_code=400, detail=f"Cannot start the run: {exc}") from None

    def _start_event(self, served: ServedWorkflow, body: RunRequest) -> StartEvent | None:
        data = body.start_event if "start_event" in body.model_fields_set else body.start_kwargs
        if data is None:
            return None
        start_class = served.workflow.start_event_class
        try:
            event = served.catalog.parse(data, bare_as=start_class)
        except EnvelopeError as exc:
            raise HTTPException(
                status_code=400, detail=f"Validation error for 'start_event': {exc}"
            ) from None
        if not isinstance(event, start_class):
            raise HTTPException(
                status_code=400,
                detail=f"Start event must be an instance of {start_class.__module__}."
                f"{start_class.__qualname__}, not {type(event).__name__}",
            )
        return event

    def _context(self, served: ServedWorkflow, body: RunRequest) -> Context[Any] | None:
        if not body.context:
            return None
        if not self.options.accept_context_api:
            raise HTTPException(
                status_code=400,
                detail="Context API is disabled. Set accept_context_api=True on "
                "WorkflowServer to enable it.",
            )
        try:
            return Context.from_dict(served.workflow, body.context)
        except (ContextSerdeError, ValueError, TypeError) as exc:
            raise HTTPException(status_code=400, detail=f"Invalid 'context': {exc}") from None

    async def wait(self, run_id: str) -> RunRecord:
        record = await self.engine.wait(run_id)
        assert record is not None  # no timeout given: it waits for the end
        return record


def unwrapped_result(run: RunRecord) -> Any:
    """``/results``' legacy result: a plain StopEvent's ``result``, else the event's value."""
    if run.status is not RunStatus.COMPLETED or run.result is None:
        return None
    envelope = envelope_of(run.result)
    if type(run.result) is StopEvent:
        return envelope.value.get("result")
    return envelope.value
