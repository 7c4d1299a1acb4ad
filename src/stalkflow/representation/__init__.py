"""Graph representation and structural validation of workflows.

``get_workflow_representation(workflow)`` returns a :class:`WorkflowGraph`
(pydantic model) of steps, events, resources and their connections;
``to_mermaid(graph)`` renders it as a Mermaid flowchart.
"""

from stalkflow.representation.build import get_workflow_representation, to_mermaid
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
    "to_mermaid",
]
