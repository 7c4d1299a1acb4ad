"""Graph representation and structural validation of workflows.

``get_workflow_representation(workflow)`` returns a :class:`WorkflowGraph`
(pydantic model) of steps, events, resources and their connections;
``to_mermaid(graph)`` renders it as a Mermaid flowchart, ``to_html(mermaid)``
wraps that text in a self-contained HTML page (``stalkflow draw --format html``),
and ``to_svg(graph)`` draws the graph itself as an SVG picture, with no script
(``stalkflow draw --format svg``, the run page of ``stalkflow serve``).
"""

from stalkflow.representation.build import get_workflow_representation, to_mermaid
from stalkflow.representation.html import to_html
from stalkflow.representation.svg import to_svg
from stalkflow.representation.types import (
    WorkflowEventNode,
    WorkflowExternalNode,
    WorkflowGenericNode,
    WorkflowGraph,
    WorkflowGraphEdge,
    WorkflowGraphNode,
    WorkflowNodeBase,
    WorkflowResourceConfigNode,
    WorkflowResourceNode,
    WorkflowStepNode,
)

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
    "get_workflow_representation",
    "to_html",
    "to_mermaid",
    "to_svg",
]
