"""Build a :class:`WorkflowGraph` from a workflow, and render one as Mermaid."""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from stalkflow.decorators import StepConfig, get_steps_from_class
from stalkflow.events import Event, HumanResponseEvent, InputRequiredEvent
from stalkflow.representation.types import (
    WorkflowEventNode,
    WorkflowExternalNode,
    WorkflowGraph,
    WorkflowGraphEdge,
    WorkflowGraphNode,
    WorkflowResourceConfigNode,
    WorkflowResourceNode,
    WorkflowStepNode,
)
from stalkflow.resource import ResourceDescriptor, _get_resource_config_data, _ResourceConfig

__all__ = ["get_workflow_representation", "to_mermaid"]

_NoneType = type(None)
EXTERNAL_NODE_ID = "external_step"


# --- finding the steps -------------------------------------------------------


def _step_functions(cls: type) -> dict[str, Callable[..., Any]]:
    """Step methods of ``cls`` (inherited ones included) plus its free-function steps."""
    found = get_steps_from_class(cls)
    found.update(getattr(cls, "_step_functions", None) or {})
    return found


def _steps_of(workflow: Any) -> tuple[type, dict[str, StepConfig], dict[str, Callable[..., Any]]]:
    """Return the workflow class, its step configs and its step functions."""
    cls: type = workflow if isinstance(workflow, type) else type(workflow)
    functions = _step_functions(cls)
    instance = workflow
    if isinstance(workflow, type):
        try:
            instance = cls()
        except Exception:  # invalid workflow, or one needing arguments: read the class
            instance = None
    configs: dict[str, StepConfig] | None = None
    if instance is not None and callable(getattr(instance, "step_configs", None)):
        configs = dict(instance.step_configs())
    if configs is None:
        configs = {name: getattr(func, "_step_config") for name, func in functions.items()}  # noqa: B009
    return cls, configs, functions


# --- nodes -------------------------------------------------------------------


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _type_name(annotation: Any) -> str | None:
    if annotation is None:
        return None
    return str(getattr(annotation, "__name__", annotation))


def _event_chain(cls: type) -> list[str]:
    """The class name, then its Event ancestors up to (not including) Event."""
    chain = [cls.__name__]
    for parent in cls.__mro__[1:]:
        if parent is Event:
            break
        if issubclass(parent, Event):
            chain.append(parent.__name__)
    return chain


def _event_node(cls: Any) -> WorkflowEventNode:
    name = _type_name(cls) or "None"
    schema: dict[str, Any] | None = None
    chain = [name]
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        chain = _event_chain(cls)
        try:
            schema = cls.model_json_schema()
        except Exception:  # a field type pydantic cannot describe
            schema = None
    return WorkflowEventNode(
        id=name, label=name, event_type=name, event_types=chain, event_schema=schema
    )


def _config_key(config_file: str, path_selector: str | None) -> str:
    return f"{config_file}:{path_selector or ''}"


def _config_file(config: _ResourceConfig[Any]) -> str:
    """The resolved path of the file, or the path as declared while it does not exist."""
    try:
        return config.config_file
    except OSError:
        return str(getattr(config, "_declared_file", config.name))


def _config_node(config: _ResourceConfig[Any], annotation: Any) -> WorkflowResourceConfigNode:
    config_file = _config_file(config)
    try:
        data = _get_resource_config_data(config_file, config.path_selector)
        value = data if isinstance(data, dict) else None
    except (OSError, ValueError):
        value = None
    model = config.cls_factory or annotation
    schema = None
    if isinstance(model, type) and issubclass(model, BaseModel):
        schema = model.model_json_schema()
    type_name = _type_name(model)
    return WorkflowResourceConfigNode(
        id=f"resource_config_{_short_hash(_config_key(config_file, config.path_selector))}",
        label=config.label or type_name or config_file,
        type_name=type_name,
        config_file=config_file,
        path_selector=config.path_selector,
        config_schema=schema,
        config_value=value,
        description=config.description,
    )


def _resource_node(descriptor: ResourceDescriptor, annotation: Any) -> WorkflowResourceNode:
    factory = getattr(descriptor, "_factory", None)
    source_file: str | None = None
    source_line: int | None = None
    doc: str | None = None
    if factory is not None:
        doc = inspect.getdoc(factory)
        try:
            source_file = inspect.getfile(factory)
            source_line = inspect.getsourcelines(factory)[1]
        except (OSError, TypeError):  # builtins, C extensions, REPL definitions
            pass
    node_id = "resource_" + _short_hash(f"{descriptor.name}:{source_file or 'unknown'}")
    type_name = _type_name(annotation)
    return WorkflowResourceNode(
        id=node_id,
        label=type_name or descriptor.name or node_id,
        type_name=type_name,
        getter_name=descriptor.name,
        source_file=source_file,
        source_line=source_line,
        description=doc,
    )


class _GraphBuilder:
    """Accumulates nodes and edges, adding each node and resource edge once."""

    def __init__(self) -> None:
        self.nodes: list[WorkflowGraphNode] = []
        self.edges: list[WorkflowGraphEdge] = []
        self._ids: set[str] = set()
        self._resources: dict[Any, WorkflowResourceNode | WorkflowResourceConfigNode] = {}
        self._resource_edges: set[tuple[str, str, str | None]] = set()

    def add(self, node: WorkflowGraphNode) -> None:
        if node.id not in self._ids:
            self._ids.add(node.id)
            self.nodes.append(node)

    def has(self, node_id: str) -> bool:
        return node_id in self._ids

    def resource(
        self, descriptor: ResourceDescriptor, annotation: Any
    ) -> WorkflowResourceNode | WorkflowResourceConfigNode:
        """The node for ``descriptor``, adding it and its dependencies the first time."""
        if isinstance(descriptor, _ResourceConfig):
            key: Any = _config_key(_config_file(descriptor), descriptor.path_selector)
        else:
            key = id(getattr(descriptor, "_factory", descriptor))
        if key in self._resources:
            return self._resources[key]
        node: WorkflowResourceNode | WorkflowResourceConfigNode
        if isinstance(descriptor, _ResourceConfig):
            descriptor.set_type_annotation(annotation)
            node = _config_node(descriptor, annotation)
        else:
            node = _resource_node(descriptor, annotation)
        self._resources[key] = node
        self.add(node)
        for param, dependency, dep_annotation in descriptor.get_dependencies():
            target = self.resource(dependency, dep_annotation)
            edge_key = (node.id, target.id, param)
            if edge_key not in self._resource_edges:
                self._resource_edges.add(edge_key)
                self.edges.append(WorkflowGraphEdge(source=node.id, target=target.id, label=param))
        return node


def get_workflow_representation(workflow: Any) -> WorkflowGraph:
    """Describe a workflow (instance or class) as a :class:`WorkflowGraph`.

    Nodes: one per step (its docstring as ``description``), per event class
    accepted or returned, per resource factory and per config file (each once
    however many steps use it), and an ``external_step`` node when a step
    returns an ``InputRequiredEvent``. Edges: event -> accepting step, step ->
    returned event, step -> resource labelled with the parameter name, resource
    -> its dependencies, ``InputRequiredEvent`` -> ``external_step`` ->
    ``HumanResponseEvent``. The graph's ``name`` is the class name and its
    ``description`` the class docstring.

    A class is instantiated without arguments to read its steps; if that
    fails (for instance because it is invalid) the decorated functions of the
    class are read instead, so invalid workflows can be drawn too.
    """
    cls, steps, functions = _steps_of(workflow)
    builder = _GraphBuilder()
    for name, cfg in steps.items():
        func = functions.get(name)
        doc = inspect.getdoc(func) if func is not None else None
        builder.add(WorkflowStepNode(id=name, label=name, description=doc))
        for event in cfg.accepted_events:
            builder.add(_event_node(event))
        for event in cfg.return_types:
            if event is _NoneType:
                continue
            builder.add(_event_node(event))
            if _is_input_required(event):
                builder.add(WorkflowExternalNode(id=EXTERNAL_NODE_ID, label=EXTERNAL_NODE_ID))
        for definition in cfg.resources:
            builder.resource(definition.resource, definition.type_annotation)

    edges = builder.edges
    for name, cfg in steps.items():
        for event in cfg.return_types:
            if event is _NoneType:
                continue
            edges.append(WorkflowGraphEdge(source=name, target=_type_name(event) or ""))
            if _is_input_required(event):
                edges.append(WorkflowGraphEdge(source=event.__name__, target=EXTERNAL_NODE_ID))
        for event in cfg.accepted_events:
            edges.append(WorkflowGraphEdge(source=event.__name__, target=name))
            if _is_subclass(event, HumanResponseEvent) and builder.has(EXTERNAL_NODE_ID):
                edges.append(WorkflowGraphEdge(source=EXTERNAL_NODE_ID, target=event.__name__))
        for definition in cfg.resources:
            node = builder.resource(definition.resource, definition.type_annotation)
            edges.append(WorkflowGraphEdge(source=name, target=node.id, label=definition.name))

    return WorkflowGraph(
        name=cls.__name__, nodes=builder.nodes, edges=edges, description=inspect.getdoc(cls)
    )


def _is_subclass(candidate: Any, base: type) -> bool:
    try:
        return isinstance(candidate, type) and issubclass(candidate, base)
    except TypeError:
        return False


def _is_input_required(candidate: Any) -> bool:
    return _is_subclass(candidate, InputRequiredEvent)


# --- Mermaid -----------------------------------------------------------------

_SHAPES: Mapping[str, tuple[str, str]] = {
    "step": ("(", ")"),
    "event": ("[", "]"),
    "external": ("[/", "/]"),
    "resource": ("[(", ")]"),
    "resource_config": ("[[", "]]"),
}
_STYLES: Mapping[str, str] = {
    "step": "fill:#e3f2fd,stroke:#1565c0",
    "event": "fill:#fff8e1,stroke:#f9a825",
    "external": "fill:#fce4ec,stroke:#ad1457",
    "resource": "fill:#e8f5e9,stroke:#2e7d32",
    "resource_config": "fill:#f3e5f5,stroke:#6a1b9a",
}


def _mermaid_text(text: str) -> str:
    """Quote ``text`` for a Mermaid label, escaping characters the syntax reserves."""
    escaped = text.replace("&", "#amp;").replace('"', "#quot;")
    escaped = escaped.replace("<", "#lt;").replace(">", "#gt;").replace("|", "#124;")
    return f'"{escaped}"'


def to_mermaid(graph: WorkflowGraph, *, direction: str = "TD") -> str:
    """Render ``graph`` as a Mermaid flowchart (the text of a ``.mmd`` file).

    Steps are rounded boxes, events plain boxes, the external actor a
    parallelogram, resources cylinders and config files subroutine boxes; other
    node types are plain boxes. Each node gets the class of its ``node_type``
    (``step``, ``event`` ...) with a default style. Edge labels, when present,
    are written on the arrows. Node ids are rewritten to safe Mermaid ids.
    """
    if direction not in ("TD", "TB", "BT", "LR", "RL"):
        raise ValueError(f"Unknown Mermaid direction {direction!r}")
    ids: dict[str, str] = {}
    used: set[str] = set()
    for node in graph.nodes:
        base = re.sub(r"\W", "_", f"{node.node_type}_{node.id}", flags=re.ASCII)
        candidate, suffix = base, 1
        while candidate in used:
            suffix += 1
            candidate = f"{base}_{suffix}"
        used.add(candidate)
        ids[node.id] = candidate

    lines = [f"flowchart {direction}", f"    %% {graph.name}"]
    kinds: list[str] = []
    for node in graph.nodes:
        kind = re.sub(r"\W", "_", node.node_type, flags=re.ASCII)
        if kind not in kinds:
            kinds.append(kind)
        left, right = _SHAPES.get(node.node_type, ("[", "]"))
        lines.append(f"    {ids[node.id]}{left}{_mermaid_text(node.label)}{right}:::{kind}")
    for edge in graph.edges:
        if edge.source not in ids or edge.target not in ids:
            continue
        arrow = "-->" if edge.label is None else f"-->|{_mermaid_text(edge.label)}|"
        lines.append(f"    {ids[edge.source]} {arrow} {ids[edge.target]}")
    for kind in kinds:
        lines.append(f"    classDef {kind} {_STYLES.get(kind, 'fill:#eeeeee,stroke:#616161')}")
    return "\n".join(lines) + "\n"
