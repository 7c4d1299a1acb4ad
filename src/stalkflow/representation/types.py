"""Pydantic models describing a workflow as a graph of nodes and edges.

A :class:`WorkflowGraph` holds nodes (steps, events, resources, configs, the
"external" human-in-the-loop actor) and directed edges between them. Each node
class carries a ``node_type`` string, which is what a serialized graph uses to
restore the right class; a ``node_type`` no standard class claims is restored as
a :class:`WorkflowGenericNode`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Discriminator, Field, Tag

__all__ = [
    "WorkflowEventNode",
    "WorkflowExternalNode",
    "WorkflowGenericNode",
    "WorkflowGraph",
    "WorkflowGraphEdge",
    "WorkflowGraphNode",
    "WorkflowNodeBase",
    "WorkflowResourceConfigNode",
    "WorkflowResourceNode",
    "WorkflowStepNode",
]


class WorkflowNodeBase(BaseModel):
    """Fields shared by every node: a unique ``id`` and a display ``label``."""

    id: str = Field(description="Unique identifier of the node within its graph")
    label: str = Field(description="Text shown for the node")

    def truncated_label(self, max_length: int) -> str:
        """Return the label cut to ``max_length`` characters, ending in ``*`` if cut."""
        if len(self.label) <= max_length:
            return self.label
        return self.label[: max_length - 1] + "*"


class WorkflowStepNode(WorkflowNodeBase):
    """A function decorated with ``@step`` (or ``@catch_error``)."""

    node_type: Literal["step"] = Field(default="step", description="Node kind")
    description: str | None = Field(default=None, description="The step's docstring")


def _inherits_from(chain: list[str] | None, names: tuple[str, ...]) -> bool:
    return chain is not None and any(name in chain for name in names)


class WorkflowEventNode(WorkflowNodeBase):
    """An Event class that steps accept or return."""

    node_type: Literal["event"] = Field(default="event", description="Node kind")
    event_type: str = Field(description="Name of the event class")
    event_types: list[str] = Field(
        description="The class name followed by the names of its Event ancestors "
        "(Event itself excluded), nearest first"
    )
    event_schema: dict[str, Any] | None = Field(
        default=None, description="JSON schema of the event class"
    )

    def is_subclass_of(self, *type_names: str) -> bool:
        """Whether the event class is, or derives from, one of the named classes."""
        return _inherits_from(self.event_types, type_names)


class WorkflowExternalNode(WorkflowNodeBase):
    """The world outside the workflow: who answers an ``InputRequiredEvent``."""

    node_type: Literal["external"] = Field(default="external", description="Node kind")


class WorkflowResourceNode(WorkflowNodeBase):
    """A resource built by a factory, injected through ``Resource(factory)``."""

    node_type: Literal["resource"] = Field(default="resource", description="Node kind")
    type_name: str | None = Field(default=None, description="Name of the annotated type")
    getter_name: str | None = Field(default=None, description="Name of the factory")
    source_file: str | None = Field(default=None, description="File defining the factory")
    source_line: int | None = Field(default=None, description="Line defining the factory")
    description: str | None = Field(default=None, description="The factory's docstring")


class WorkflowResourceConfigNode(WorkflowNodeBase):
    """A pydantic model loaded from a JSON file through ``ResourceConfig(...)``."""

    node_type: Literal["resource_config"] = Field(
        default="resource_config", description="Node kind"
    )
    type_name: str | None = Field(default=None, description="Name of the model class")
    config_file: str | None = Field(default=None, description="Path of the JSON file")
    path_selector: str | None = Field(
        default=None, description="Dotted path of the object used within the file"
    )
    config_schema: dict[str, Any] | None = Field(
        default=None, description="JSON schema of the model class"
    )
    config_value: dict[str, Any] | None = Field(
        default=None, description="The object read from the file, when readable"
    )
    description: str | None = Field(default=None, description="What the config is for")


class WorkflowGenericNode(WorkflowNodeBase):
    """A node of any other kind (agents, tools ...), named by a free ``node_type``."""

    node_type: str = Field(description="Node kind, e.g. 'agent' or 'tool'")
    event_type: str | None = Field(default=None, description="Optional type name")
    event_types: list[str] | None = Field(
        default=None, description="Optional inheritance chain, as in WorkflowEventNode"
    )

    def is_subclass_of(self, *type_names: str) -> bool:
        """Whether ``event_types`` names one of the given classes (False without it)."""
        return _inherits_from(self.event_types, type_names)


#: Any node of a :class:`WorkflowGraph`.
WorkflowGraphNode = (
    WorkflowStepNode
    | WorkflowEventNode
    | WorkflowExternalNode
    | WorkflowResourceNode
    | WorkflowResourceConfigNode
    | WorkflowGenericNode
)

_STANDARD_NODE_TYPES = frozenset({"step", "event", "external", "resource", "resource_config"})


def _node_tag(value: Any) -> str:
    """Pick the node class for a value being validated: by ``node_type``, else generic."""
    node_type = value.get("node_type") if isinstance(value, dict) else None
    if node_type is None:
        node_type = getattr(value, "node_type", None)
    if isinstance(value, WorkflowGenericNode) or node_type not in _STANDARD_NODE_TYPES:
        return "generic"
    return str(node_type)


_TaggedNode = Annotated[
    Union[  # noqa: UP007 - Tag annotations need the typing.Union form
        Annotated[WorkflowStepNode, Tag("step")],
        Annotated[WorkflowEventNode, Tag("event")],
        Annotated[WorkflowExternalNode, Tag("external")],
        Annotated[WorkflowResourceNode, Tag("resource")],
        Annotated[WorkflowResourceConfigNode, Tag("resource_config")],
        Annotated[WorkflowGenericNode, Tag("generic")],
    ],
    Discriminator(_node_tag),
]


class WorkflowGraphEdge(BaseModel):
    """A directed edge from node ``source`` to node ``target`` (both node ids)."""

    source: str = Field(description="Id of the node the edge leaves")
    target: str = Field(description="Id of the node the edge enters")
    label: str | None = Field(
        default=None, description="Optional text, e.g. the parameter a resource fills"
    )


class WorkflowGraph(BaseModel):
    """A workflow's structure: its name, nodes, edges and docstring."""

    name: str = Field(description="Name of the workflow class")
    nodes: list[_TaggedNode] = Field(description="Every node of the graph")
    edges: list[WorkflowGraphEdge] = Field(description="Every edge of the graph")
    description: str | None = Field(default=None, description="The workflow's docstring")

    def filter_by_node_type(self, *node_types: str) -> WorkflowGraph:
        """Return a copy without the nodes of the given types, keeping connectivity.

        A path ``A -> X -> ... -> B`` whose inner nodes are all removed becomes
        one edge ``A -> B``, labelled with the label of the first removed node on
        the path. Direct edges between kept nodes keep their own label. Edges
        that only lead into removed nodes disappear, and each (source, target)
        pair appears once.
        """
        removed = {node.id for node in self.nodes if node.node_type in node_types}
        kept = [node for node in self.nodes if node.id not in removed]
        kept_ids = {node.id for node in kept}
        labels = {node.id: node.label for node in self.nodes}
        outgoing: dict[str, list[WorkflowGraphEdge]] = {}
        for edge in self.edges:
            outgoing.setdefault(edge.source, []).append(edge)

        new_edges: list[WorkflowGraphEdge] = []
        seen: set[tuple[str, str]] = set()
        for node in kept:
            visited: set[str] = set()
            # Depth-first, in edge order; each entry is (edge, label of first removed node).
            stack: list[tuple[WorkflowGraphEdge, str | None]] = [
                (edge, None) for edge in reversed(outgoing.get(node.id, []))
            ]
            while stack:
                edge, via = stack.pop()
                if edge.target in kept_ids:
                    if (node.id, edge.target) not in seen:
                        seen.add((node.id, edge.target))
                        label = via if via is not None else edge.label
                        new_edges.append(
                            WorkflowGraphEdge(source=node.id, target=edge.target, label=label)
                        )
                elif edge.target in removed and edge.target not in visited:
                    visited.add(edge.target)
                    first = via if via is not None else labels[edge.target]
                    stack.extend((nxt, first) for nxt in reversed(outgoing.get(edge.target, [])))
        return WorkflowGraph(
            name=self.name, nodes=kept, edges=new_edges, description=self.description
        )
