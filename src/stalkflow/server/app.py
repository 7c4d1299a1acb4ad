"""``WorkflowServer``: workflows over HTTP, compatible with llama-agents-server's REST API.

Example::

    from stalkflow.server import WorkflowServer

    server = WorkflowServer()
    server.add_workflow("greet", Greeter())
    await server.serve(host="0.0.0.0", port=8080)   # or mount ``server.app``

The server only submits runs and reads them: steps execute on the engine
(the configured one, or the embedded one), and every answer about a run
comes from the engine's Store. Several server processes behind a load
balancer therefore serve the same runs, and a handler id is a run id, usable
with ``stalkflow.get_run`` too.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.middleware import Middleware

from stalkflow.engine import Engine, get_engine
from stalkflow.errors import BackendError, EventCodecError
from stalkflow.events import Event
from stalkflow.server import api, streaming, ui
from stalkflow.server.auth import API_KEY_ENV, ApiKeyMiddleware
from stalkflow.server.limits import DEFAULT_MAX_BODY_BYTES, BodyLimitMiddleware
from stalkflow.server.service import ServerOptions, Service
from stalkflow.workflow import Workflow

__all__ = ["WorkflowServer", "run_server", "served_name"]

logger = logging.getLogger("stalkflow.server")

#: The environment variable listing the modules whose workflows ``run_server`` serves.
WORKFLOWS_ENV = "STALKFLOW_WORKFLOWS"


def _version() -> str:
    try:
        return version("stalkflow")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


async def _backend_unavailable(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("Store or broker unavailable on %s %s: %s", request.method, request.url, exc)
    return JSONResponse({"detail": f"Service unavailable: {exc}"}, status_code=503)


async def _unreadable(request: Request, exc: Exception) -> JSONResponse:
    # A stored run names an event type this process does not know (upstream answers 422 too).
    logger.warning("Unreadable stored data on %s %s: %s", request.method, request.url, exc)
    return JSONResponse(
        {"detail": f"Stored handler data cannot be decoded: {exc}"}, status_code=422
    )


class WorkflowServer:
    """An HTTP API for running workflows, shaped like llama-agents-server's.

    Args:
        engine: Where runs execute and live; by default the process's engine
            (configured with ``stalkflow.configure`` or the environment, else embedded).
        api_key: Required on every request as ``Authorization: Bearer <key>``
            or ``X-API-Key: <key>``; by default ``$STALKFLOW_API_KEY``; none
            (an open API) when neither is set.
        max_body_bytes: Request bodies larger than this get 413.
        sse_heartbeat_interval: Seconds of silence after which an SSE stream
            sends a ``: heartbeat`` comment; None for none.
        accept_context_api: Accept a saved ``context`` in run requests.
        middleware: Starlette middleware around the routes (CORS, for example).
        stream_poll_s: The longest single wait of a stream reader on the store.
        ui: Serve the run viewer pages under ``/ui/`` (see ``stalkflow.server.ui``).
    """

    def __init__(
        self,
        *,
        engine: Engine | None = None,
        api_key: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        sse_heartbeat_interval: float | None = 25.0,
        accept_context_api: bool = False,
        middleware: Sequence[Middleware] | None = None,
        stream_poll_s: float = 5.0,
        ui: bool = True,
    ) -> None:
        if sse_heartbeat_interval is not None and sse_heartbeat_interval <= 0:
            raise ValueError("sse_heartbeat_interval must be positive, or None")
        if stream_poll_s <= 0:
            raise ValueError("stream_poll_s must be positive")
        self.engine = engine if engine is not None else get_engine()
        options = ServerOptions(
            sse_heartbeat_interval=sse_heartbeat_interval,
            accept_context_api=accept_context_api,
            stream_poll_s=stream_poll_s,
        )
        self._service = Service(self.engine, options)
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self.app = self._build_app(key or None, max_body_bytes, middleware, ui)

    def _build_app(
        self,
        api_key: str | None,
        max_body_bytes: int,
        middleware: Sequence[Middleware] | None,
        with_ui: bool,
    ) -> FastAPI:
        app = FastAPI(
            title="stalkflow workflows API",
            version=_version(),
            middleware=list(middleware or ()),
        )
        app.include_router(api.build_router(self._service))
        app.include_router(streaming.build_router(self._service))
        app.include_router(ui.build_router(self._service))
        app.add_exception_handler(BackendError, _backend_unavailable)
        app.add_exception_handler(EventCodecError, _unreadable)
        # The last added is the outermost: the key is checked before any body is read.
        app.add_middleware(BodyLimitMiddleware, max_body_bytes=max_body_bytes)
        if api_key:
            app.add_middleware(ApiKeyMiddleware, api_key=api_key)
        if with_ui:  # its pages hold no data: served ahead of the key (their script sends it)
            app.add_middleware(ui.UiPages)
        return app

    # --- workflows --------------------------------------------------------------------

    def add_workflow(
        self,
        name: str,
        workflow: Workflow,
        additional_events: list[type[Event]] | None = None,
    ) -> None:
        """Serve ``workflow`` under ``name`` (``/workflows/{name}/run`` ...).

        ``additional_events`` are event types clients may send to its runs
        beyond those in its step signatures (for example a custom response
        awaited with ``ctx.wait_for_event``). An incoming event of any other
        type is refused.

        Raises:
            ValueError: the name is taken or not URL-safe, or the workflow runs
                on another engine than the server's.
        """
        self._service.add(name, workflow, additional_events or ())

    def get_workflows(self) -> dict[str, Workflow]:
        """The served workflows by name."""
        return {name: self._service.served(name).workflow for name in self._service.names()}

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> WorkflowServer:
        """Nothing to resume: runs live in the store and go on without the server."""
        return self

    async def stop(self) -> None:
        """Runs are not cancelled: they belong to the engine, not to this process."""

    @asynccontextmanager
    async def contextmanager(self) -> AsyncIterator[WorkflowServer]:
        """``async with server.contextmanager():`` as upstream's (start, then stop)."""
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    async def serve(
        self,
        host: str = "localhost",
        port: int = 80,
        uvicorn_config: dict[str, Any] | None = None,
    ) -> None:
        """Serve over HTTP with uvicorn until shut down."""
        import uvicorn

        config = uvicorn.Config(self.app, host=host, port=port, **(uvicorn_config or {}))
        logger.info("Serving workflows %s at http://%s:%s", self._service.names(), host, port)
        await uvicorn.Server(config).serve()

    def openapi_schema(self) -> dict[str, Any]:
        return self.app.openapi()


def served_name(workflow: Workflow) -> str:
    """The name ``run_server`` serves a workflow under: its explicit
    ``workflow_name``, else its class name."""
    cls = type(workflow)
    default = f"{cls.__module__}.{cls.__qualname__}"
    return cls.__name__ if workflow.workflow_name == default else workflow.workflow_name


def _module_names(modules: str | Iterable[str] | None) -> list[str]:
    if modules is None:
        modules = os.environ.get(WORKFLOWS_ENV, "")
    names = modules.split(",") if isinstance(modules, str) else list(modules)
    return [name.strip() for name in names if name.strip()]


def run_server(
    host: str = "127.0.0.1",
    port: int = 8080,
    workflows_modules: str | Iterable[str] | None = None,
    api_key: str | None = None,
    *,
    engine: Engine | None = None,
    log_level: str = "info",
    **options: Any,
) -> None:
    """Serve the workflows of some modules over HTTP until interrupted (for ``stalkflow serve``).

    ``workflows_modules`` is a list of module names, or one comma-separated
    string; by default ``$STALKFLOW_WORKFLOWS``. Each module's workflow
    instances (and its step-bearing classes, instantiated with no arguments)
    are served under :func:`served_name`. ``api_key`` defaults to
    ``$STALKFLOW_API_KEY``; other keywords go to :class:`WorkflowServer`.

    Raises:
        WorkflowConfigurationError: a workflow class needs constructor arguments.
        ValueError: two workflows would have the same name.
    """
    import uvicorn

    from stalkflow.distributed import workflows_in

    server = WorkflowServer(engine=engine, api_key=api_key, **options)
    for module_name in _module_names(workflows_modules):
        module = importlib.import_module(module_name)
        found = workflows_in(module)
        if not found:
            logger.warning("Module %s defines no workflow", module_name)
        for workflow in found:
            server.add_workflow(served_name(workflow), workflow)
    uvicorn.run(server.app, host=host, port=port, log_level=log_level)
