"""A small web page to watch runs, served by ``WorkflowServer`` next to its API.

- ``GET /ui/``: the runs of the served workflows with their status (from
  ``GET /handlers``), refreshed every two seconds, filterable by status and workflow.
- ``GET /ui/runs/{id}``: one run: its status, result or error, its state
  (``GET /handlers/{id}/state``), its workflow's graph as an SVG picture
  (``GET /workflows/{name}/representation.svg``) and its event log, live: the
  page reads the run's Server-Sent Events from ``GET /events/{id}``.

The pages are plain HTML with one stylesheet and one script, and no third-party
code: the graph is drawn on the server, from the workflow's
:class:`~stalkflow.representation.WorkflowGraph`, by
:func:`~stalkflow.representation.to_svg`, so the page works offline.

**The API key.** The pages themselves hold no data (every run detail comes from
the API, read by the page's script), so they are served without the key; every
API request the script makes carries it in an ``Authorization: Bearer``
header, and the API checks it as for any client. The key never travels in a
URL: the browser's ``EventSource`` cannot send headers, so the page reads the
same SSE stream with ``fetch()`` and parses it itself, resuming from the last
event id after a disconnection. The page asks for the key when the API answers
401 and keeps it in the tab's ``sessionStorage`` (gone when the tab closes); a
link may carry it in the fragment, ``/ui/#key=<key>``, which browsers never send
to the server: the page stores it and removes it from the address bar.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from stalkflow.context.state_codec import DictState
from stalkflow.context.state_store import infer_state_type
from stalkflow.representation import get_workflow_representation, to_svg
from stalkflow.server.models import ID_PATTERN
from stalkflow.server.service import Service

__all__ = ["UI_PREFIX", "UiPages", "build_router", "state_view"]

#: Where the pages are served.
UI_PREFIX = "/ui"

_RUN_ID = re.compile(ID_PATTERN)

# Files of the pages, in ``stalkflow/server/static``, and their content types.
_STATIC: Mapping[str, str] = {
    "ui.css": "text/css; charset=utf-8",
    "ui.js": "text/javascript; charset=utf-8",
}

# The pages load nothing but their own files; the script talks to this origin only.
_PAGE_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


# --- the state of a run, for display ----------------------------------------------------


def _unwrapped(value: Any) -> Any:
    """``value`` with the serializer's typed envelopes replaced by their plain values."""
    if isinstance(value, list):
        return [_unwrapped(item) for item in value]
    if not isinstance(value, dict):
        return value
    if (value.get("__is_pydantic") or value.get("__is_component")) and "value" in value:
        return _unwrapped(value["value"])
    return {key: _unwrapped(item) for key, item in value.items()}


def _stored_value(item: Any) -> Any:
    if not isinstance(item, str):
        return item
    try:
        return _unwrapped(json.loads(item))
    except ValueError:
        return item  # written by another serializer (a pickle): shown as stored


def state_view(blob: str | None, *, typed: bool) -> Any:
    """A stored state blob as plain JSON, for display; never imports a class it names.

    Typed state is the model's JSON. Untyped state is stored key by key, each
    value its own serialized document; a pydantic value inside shows as its fields.
    """
    if blob is None:
        return {}
    try:
        value = json.loads(blob)
    except ValueError:
        return blob
    if typed or not isinstance(value, dict):
        return _unwrapped(value)
    return {key: _stored_value(item) for key, item in value.items()}


# --- the data routes (behind the API key, like the rest of the API) ----------------------


def build_router(service: Service) -> APIRouter:
    """``GET /handlers/{id}/state`` and ``GET /workflows/{name}/representation.svg``."""
    router = APIRouter()

    @router.get(
        "/handlers/{handler_id}/state",
        responses={404: {"description": "Unknown handler"}},
    )
    async def handler_state(handler_id: str) -> dict[str, Any]:
        """A run's context state, read-only: ``{handler_id, workflow_name, state_type,
        typed, version, state}``; ``state`` is JSON (typed state is the model's fields)."""
        run, served = await service.load_run(handler_id)
        try:
            state_type = infer_state_type(served.workflow)
        except ValueError:  # incompatible state types: the workflow cannot run anyway
            state_type = DictState
        typed = not issubclass(state_type, DictState)
        snapshot = await service.engine.store.load_state(run.run_id)
        return {
            "handler_id": run.run_id,
            "workflow_name": served.name,
            "state_type": state_type.__name__ if typed else None,
            "typed": typed,
            "version": snapshot.version,
            "state": state_view(snapshot.blob, typed=typed),
        }

    @router.get(
        "/workflows/{name}/representation.svg",
        response_class=Response,
        responses={
            200: {"content": {"image/svg+xml": {}}, "description": "The graph"},
            404: {"description": "Unknown workflow"},
        },
    )
    async def representation_svg(name: str) -> Response:
        """The workflow's graph (as ``/representation`` describes it) drawn as SVG."""
        workflow = service.served(name).workflow
        try:
            svg = to_svg(get_workflow_representation(workflow))
        except Exception as exc:
            raise HTTPException(
                status_code=500, detail=f"Error while drawing the workflow: {exc}"
            ) from None
        return Response(
            svg,
            media_type="image/svg+xml",
            headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
        )

    return router


# --- the pages (no data in them: served without the key) ---------------------------------


@cache
def _static(name: str) -> str:
    return resources.files("stalkflow.server").joinpath("static").joinpath(name).read_text("utf-8")


def _api_root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _page(request: Request, template: str, **values: str) -> Response:
    root = _api_root(request)
    text = _static(template)
    fields = {"root": root, "version": _asset_version(), **values}
    for key, value in fields.items():
        text = text.replace("{{" + key + "}}", html.escape(value, quote=True))
    return Response(text, media_type="text/html; charset=utf-8", headers=dict(_PAGE_HEADERS))


@cache
def _asset_version() -> str:
    digest = hashlib.sha256()
    for name in sorted(_STATIC):
        digest.update(_static(name).encode())
    return digest.hexdigest()[:10]


async def _to_list(request: Request) -> Response:
    return RedirectResponse(f"{_api_root(request)}{UI_PREFIX}/", status_code=307)


async def _runs_page(request: Request) -> Response:
    return _page(request, "runs.html")


async def _run_page(request: Request) -> Response:
    run_id = str(request.path_params["run_id"])
    if not _RUN_ID.match(run_id):
        return PlainTextResponse("Not Found", status_code=404)
    return _page(request, "run.html", run_id=run_id)


async def _asset(request: Request) -> Response:
    name = str(request.path_params["name"])
    media_type = _STATIC.get(name)
    if media_type is None:
        return PlainTextResponse("Not Found", status_code=404)
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
    return Response(_static(name), media_type=media_type, headers=headers)


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)


_PAGES = Router(
    routes=[
        Route(UI_PREFIX, _to_list, methods=["GET", "HEAD"]),
        Route(f"{UI_PREFIX}/", _runs_page, methods=["GET", "HEAD"]),
        Route(f"{UI_PREFIX}/runs/{{run_id}}", _run_page, methods=["GET", "HEAD"]),
        Route(f"{UI_PREFIX}/static/{{name}}", _asset, methods=["GET", "HEAD"]),
    ],
    default=_not_found,
    redirect_slashes=False,
)


class UiPages:
    """ASGI middleware serving the pages under ``/ui`` itself, ahead of the API key check.

    Everything else (the API, including the routes the pages' script calls)
    passes through to the wrapped application, key check included.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            path = str(scope["path"])
            root = str(scope.get("root_path", ""))
            if root and path.startswith(root):
                path = path[len(root) :]
            if path == UI_PREFIX or path.startswith(UI_PREFIX + "/"):
                await _PAGES(scope, receive, send)
                return
        await self.app(scope, receive, send)
