"""A small web page to watch runs, served by ``WorkflowServer`` next to its API.

- ``GET /ui/``: the runs of the served workflows with their status (from
  ``GET /handlers``), refreshed every two seconds, filterable by status and workflow.
- ``GET /ui/runs/{id}``: one run: its status, result or error, its state
  (``GET /handlers/{id}/state``), its workflow's graph as an SVG picture
  (``GET /workflows/{name}/representation.svg``) and its event log, live: the
  page reads the run's Server-Sent Events from ``GET /events/{id}``.

The pages are plain HTML with one stylesheet and one script, and no third-party
code: the graph is drawn here, on the server, from the workflow's
:class:`~stalkflow.representation.WorkflowGraph` (a layered layout, steps and
events as boxes, edges as arrows), so the page works offline.

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

import dataclasses
import hashlib
import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
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
from stalkflow.representation import WorkflowGraph, get_workflow_representation
from stalkflow.server.models import ID_PATTERN
from stalkflow.server.service import Service

__all__ = ["UI_PREFIX", "UiPages", "build_router", "graph_svg", "state_view"]

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


# --- the graph as SVG --------------------------------------------------------------------

_FONT = "ui-monospace, SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', monospace"
_FONT_SIZE = 13
_CHAR_W = 7.9  # a monospace character at 13 px, with a little room
_NODE_H = 30
_PAD_X = 14
_GAP_X = 28
_GAP_Y = 40
_MARGIN = 16
_LOOP_STEP = 18
_MAX_LABEL = 36

# node_type: (legend name, fill, stroke, corner radius)
_KINDS: Mapping[str, tuple[str, str, str, int]] = {
    "step": ("step", "#e3f2fd", "#1565c0", 14),
    "event": ("event", "#fff8e1", "#b28704", 3),
    "external": ("human / outside", "#fce4ec", "#ad1457", 3),
    "resource": ("resource", "#e8f5e9", "#2e7d32", 8),
    "resource_config": ("config", "#f3e5f5", "#6a1b9a", 8),
}
_OTHER_KIND = ("other", "#f5f5f5", "#616161", 3)


@dataclasses.dataclass
class _Box:
    id: str
    label: str
    kind: str
    tooltip: str
    layer: int = 0
    order: float = 0.0
    x: float = 0.0  # centre
    y: float = 0.0  # centre
    width: float = 0.0


def _layers(
    ids: Sequence[str], edges: Sequence[tuple[str, str]]
) -> tuple[dict[str, int], set[int]]:
    """A layer per node (longest path from the sources) and the indexes of back edges.

    Cycles (a loop back to an earlier step) are broken by a depth-first search
    from the sources in node order: an edge to a node still on the search path
    is a back edge, drawn separately and ignored by the layering.
    """
    outgoing: dict[str, list[tuple[int, str]]] = {node: [] for node in ids}
    has_incoming: set[str] = set()
    for index, (source, target) in enumerate(edges):
        outgoing[source].append((index, target))
        has_incoming.add(target)
    back: set[int] = set()
    state: dict[str, int] = {}  # 1 on the path, 2 done
    roots = [node for node in ids if node not in has_incoming] + list(ids)
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(outgoing[root]))]
        while stack:
            node, children = stack[-1]
            for index, child in children:
                seen = state.get(child)
                if seen == 1:
                    back.add(index)
                elif seen is None:
                    state[child] = 1
                    stack.append((child, iter(outgoing[child])))
                    break
            else:
                state[node] = 2
                stack.pop()
    # longest path on what is left, which is acyclic (Kahn's order)
    indegree = dict.fromkeys(ids, 0)
    forward = [(s, t) for i, (s, t) in enumerate(edges) if i not in back]
    for _, target in forward:
        indegree[target] += 1
    layer = dict.fromkeys(ids, 0)
    ready = [node for node in ids if indegree[node] == 0]
    successors: dict[str, list[str]] = {node: [] for node in ids}
    for source, target in forward:
        successors[source].append(target)
    while ready:
        node = ready.pop(0)
        for target in successors[node]:
            layer[target] = max(layer[target], layer[node] + 1)
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
    return layer, back


def _order_layers(
    boxes: dict[str, _Box], edges: Sequence[tuple[str, str]], back: set[int]
) -> list[list[_Box]]:
    """Nodes by layer, ordered to limit crossings (a few barycentre sweeps)."""
    count = max((box.layer for box in boxes.values()), default=0) + 1
    rows: list[list[_Box]] = [[] for _ in range(count)]
    for box in boxes.values():
        rows[box.layer].append(box)
    for row in rows:
        for position, box in enumerate(row):
            box.order = position
    forward = [(s, t) for i, (s, t) in enumerate(edges) if i not in back]
    above: dict[str, list[str]] = {node: [] for node in boxes}
    below: dict[str, list[str]] = {node: [] for node in boxes}
    for source, target in forward:
        above[target].append(source)
        below[source].append(target)
    for sweep in range(4):
        neighbours = above if sweep % 2 == 0 else below
        sequence = rows[1:] if sweep % 2 == 0 else rows[-2::-1]
        for row in sequence:
            for box in row:
                linked = [boxes[other].order for other in neighbours[box.id]]
                if linked:
                    box.order = sum(linked) / len(linked)
            row.sort(key=lambda box: box.order)
            for position, box in enumerate(row):
                box.order = position
    return rows


def _attr(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def graph_svg(graph: WorkflowGraph) -> str:
    """Draw ``graph`` as a standalone SVG document (top to bottom, layered).

    Steps are rounded boxes, events square boxes, the outside world (who answers
    an ``InputRequiredEvent``) and resources in their own colours; edges are
    arrows, loops back to an earlier node curve along the right side. Each node
    is a ``<g class="node node-<type>" data-node-id="...">`` with a ``<title>``
    (its description, when it has one) and its label as ``<text>``.
    """
    boxes: dict[str, _Box] = {}
    for node in graph.nodes:
        if node.id in boxes:
            continue
        label = node.truncated_label(_MAX_LABEL)
        description = getattr(node, "description", None)
        tooltip = f"{node.label}: {description}" if description else node.label
        boxes[node.id] = _Box(node.id, label, node.node_type, tooltip)
    drawn: dict[tuple[str, str], str | None] = {}  # each (source, target) once
    for edge in graph.edges:
        pair = (edge.source, edge.target)
        if edge.source in boxes and edge.target in boxes and edge.source != edge.target:
            drawn[pair] = drawn.get(pair) or edge.label
    edges = list(drawn)
    labels = list(drawn.values())
    layer, back = _layers(list(boxes), edges)
    for node_id, box in boxes.items():
        box.layer = layer[node_id]
        box.width = len(box.label) * _CHAR_W + 2 * _PAD_X
    rows = _order_layers(boxes, edges, back)

    row_widths = [sum(box.width for box in row) + _GAP_X * (len(row) - 1) for row in rows]
    inner_width = max(row_widths, default=0.0)
    for row, row_width in zip(rows, row_widths, strict=True):
        x = _MARGIN + (inner_width - row_width) / 2
        for box in row:
            box.x = x + box.width / 2
            box.y = _MARGIN + box.layer * (_NODE_H + _GAP_Y) + _NODE_H / 2
            x += box.width + _GAP_X

    marker = "sf-arrow-" + hashlib.sha256(graph.name.encode()).hexdigest()[:8]
    paths: list[str] = []
    right_edge = _MARGIN + inner_width
    loops = 0
    for index, (source_id, target_id) in enumerate(edges):
        source, target = boxes[source_id], boxes[target_id]
        if index in back or target.layer <= source.layer:
            # A loop back up: out of the source's bottom, along the gap below it to a
            # channel right of every box it passes, up, along the gap above the
            # target, into the target's top. Gaps between layers hold no boxes.
            loops += 1
            low, high = sorted((source.layer, target.layer))
            passed = [box.x + box.width / 2 for row in rows[low : high + 1] for box in row]
            channel = max(passed) + _GAP_X / 2 + loops * _LOOP_STEP
            right_edge = max(right_edge, channel)
            shift = (loops - 1) % 3 * 4
            x1, y1 = source.x + source.width / 4, source.y + _NODE_H / 2
            x2, y2 = target.x + target.width / 4, target.y - _NODE_H / 2 - 2
            below, above = y1 + _GAP_Y / 2 - 4 + shift, y2 - _GAP_Y / 2 + 6 + shift
            d = (
                f"M{_num(x1)},{_num(y1)} L{_num(x1)},{_num(below)} L{_num(channel)},{_num(below)} "
                f"L{_num(channel)},{_num(above)} L{_num(x2)},{_num(above)} L{_num(x2)},{_num(y2)}"
            )
            css = "edge edge-back"
        else:
            x1, y1 = source.x, source.y + _NODE_H / 2
            x2, y2 = target.x, target.y - _NODE_H / 2 - 2
            middle = (y1 + y2) / 2
            d = (
                f"M{_num(x1)},{_num(y1)} C{_num(x1)},{_num(middle)} "
                f"{_num(x2)},{_num(middle)} {_num(x2)},{_num(y2)}"
            )
            css = "edge"
        paths.append(
            f'<path class="{css}" data-source="{_attr(source_id)}" '
            f'data-target="{_attr(target_id)}" d="{d}" fill="none" stroke="#607080" '
            f'stroke-width="1.4" stroke-linejoin="round" marker-end="url(#{marker})"/>'
        )
        edge_label = labels[index]
        if edge_label:
            paths.append(
                f'<text class="edge-label" x="{_num((x1 + x2) / 2 + 4)}" '
                f'y="{_num((y1 + y2) / 2)}" font-size="11" fill="#445">{_attr(edge_label)}</text>'
            )

    nodes: list[str] = []
    for box in boxes.values():
        _, fill, stroke, radius = _KINDS.get(box.kind, _OTHER_KIND)
        kind_class = re.sub(r"[^A-Za-z0-9_-]", "_", box.kind)
        nodes.append(
            f'<g class="node node-{kind_class}" data-node-id="{_attr(box.id)}">'
            f"<title>{_attr(box.tooltip)}</title>"
            f'<rect x="{_num(box.x - box.width / 2)}" y="{_num(box.y - _NODE_H / 2)}" '
            f'width="{_num(box.width)}" height="{_NODE_H}" rx="{radius}" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
            f'<text x="{_num(box.x)}" y="{_num(box.y)}" text-anchor="middle" '
            f'dominant-baseline="central" fill="#1a1a1a">{_attr(box.label)}</text></g>'
        )

    legend, legend_width, legend_height = _legend(
        [box.kind for box in boxes.values()], _MARGIN + len(rows) * (_NODE_H + _GAP_Y) - 18
    )
    width = max(right_edge, _MARGIN + legend_width) + _MARGIN
    height = _MARGIN + len(rows) * (_NODE_H + _GAP_Y) - 18 + legend_height + _MARGIN
    title = f"Workflow {graph.name}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="stalkflow-graph" role="img" '
        f'aria-label="{_attr(title)}" width="{_num(width)}" height="{_num(height)}" '
        f'viewBox="0 0 {_num(width)} {_num(height)}" font-family="{_attr(_FONT)}" '
        f'font-size="{_FONT_SIZE}">'
        f"<title>{_attr(title)}</title>"
        f'<defs><marker id="{marker}" viewBox="0 0 10 10" refX="9" refY="5" '
        f'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="#607080"/></marker></defs>'
        f'<rect width="100%" height="100%" fill="#ffffff"/>'
        f'<g class="edges">{"".join(paths)}</g>'
        f'<g class="nodes">{"".join(nodes)}</g>'
        f"{legend}</svg>"
    )


def _legend(kinds: Iterable[str], top: float) -> tuple[str, float, float]:
    """The key to the node colours present: its SVG, width and height."""
    present = [kind for kind in _KINDS if kind in set(kinds)]
    if not present:
        return "", 0.0, 0.0
    parts = ['<g class="legend">']
    x = float(_MARGIN)
    y = top + 10
    for kind in present:
        name, fill, stroke, radius = _KINDS[kind]
        parts.append(
            f'<rect x="{_num(x)}" y="{_num(y)}" width="14" height="12" rx="{min(radius, 4)}" '
            f'fill="{fill}" stroke="{stroke}"/>'
            f'<text x="{_num(x + 19)}" y="{_num(y + 6)}" dominant-baseline="central" '
            f'font-size="11" fill="#555">{_attr(name)}</text>'
        )
        x += 19 + len(name) * 7.2 + 16
    parts.append("</g>")
    return "".join(parts), x - 16 - _MARGIN, 30.0


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
            svg = graph_svg(get_workflow_representation(workflow))
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
