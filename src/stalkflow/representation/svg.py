"""A workflow graph as an SVG picture, drawn here: no JavaScript, no third-party code.

``to_svg(graph)`` lays a :class:`~stalkflow.representation.WorkflowGraph` out in
layers, top to bottom (a node sits below the nodes it follows; loops back up are
drawn along the right side), and draws steps, events, the outside world and
resources as boxes of their own colours, edges as arrows, and a legend. The
document stands alone: the run page of ``stalkflow serve`` shows it
(``GET /workflows/{name}/representation.svg``), and ``stalkflow draw --format svg``
writes it to a file that any browser opens offline.

Example:
    >>> from stalkflow.representation import WorkflowGraph
    >>> to_svg(WorkflowGraph(name="Empty", nodes=[], edges=[])).startswith("<svg ")
    True
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import re
from collections.abc import Iterable, Mapping, Sequence

from stalkflow.representation.types import WorkflowGraph

__all__ = ["to_svg"]

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


def to_svg(graph: WorkflowGraph, *, title: str | None = None) -> str:
    """Draw ``graph`` as a standalone SVG document (top to bottom, layered).

    Steps are rounded boxes, events square boxes, the outside world (who answers
    an ``InputRequiredEvent``) and resources in their own colours; edges are
    arrows, loops back to an earlier node curve along the right side. Each node
    is a ``<g class="node node-<type>" data-node-id="...">`` with a ``<title>``
    (its description, when it has one) and its label as ``<text>``.

    Args:
        graph: The graph, as ``get_workflow_representation`` builds it.
        title: The picture's title and accessible name; ``"Workflow <name>"`` if not given.
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
    if title is None:
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
