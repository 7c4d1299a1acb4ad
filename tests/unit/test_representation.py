"""Graph representation of workflows (stalkflow.representation).

The workflows here are plain classes whose methods carry ``@step`` configs, or
objects exposing ``step_configs()``, so the tests do not need the Workflow class.
"""

import json
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, ValidationError

from stalkflow.decorators import StepConfig, catch_error, step
from stalkflow.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StepFailedEvent,
    StopEvent,
)
from stalkflow.representation import (
    WorkflowEventNode,
    WorkflowExternalNode,
    WorkflowGenericNode,
    WorkflowGraph,
    WorkflowGraphEdge,
    WorkflowResourceConfigNode,
    WorkflowResourceNode,
    WorkflowStepNode,
    get_workflow_representation,
    to_mermaid,
)
from stalkflow.resource import Resource, ResourceConfig


class Middle(Event):
    text: str = ""


class Special(Middle):
    pass


class Ask(InputRequiredEvent):
    pass


class Answer(HumanResponseEvent):
    pass


class Database:
    pass


def get_database() -> Database:
    """Open the database."""
    return Database()


class Settings(BaseModel):
    url: str


class Pipeline:
    """Turns a start into a stop."""

    @step
    async def begin(self, ev: StartEvent) -> Middle:
        """First step."""
        return Middle()

    @step
    async def finish(
        self, ev: Middle, db: Annotated[Database, Resource(get_database)]
    ) -> StopEvent:
        return StopEvent()

    @catch_error
    async def recover(self, ev: StepFailedEvent) -> StopEvent:
        return StopEvent()


def edges(graph: WorkflowGraph) -> set[tuple[str, str, str | None]]:
    return {(e.source, e.target, e.label) for e in graph.edges}


def by_type(graph: WorkflowGraph, node_type: str) -> dict[str, Any]:
    return {n.id: n for n in graph.nodes if n.node_type == node_type}


# --- get_workflow_representation ----------------------------------------------


def test_small_workflow_nodes_and_edges() -> None:
    graph = get_workflow_representation(Pipeline)
    assert graph.name == "Pipeline"
    assert graph.description == "Turns a start into a stop."
    steps = by_type(graph, "step")
    assert set(steps) == {"begin", "finish", "recover"}
    assert steps["begin"].description == "First step."
    assert steps["finish"].description is None
    assert set(by_type(graph, "event")) == {"StartEvent", "Middle", "StopEvent", "StepFailedEvent"}
    resource = next(iter(by_type(graph, "resource").values()))
    assert edges(graph) == {
        ("StartEvent", "begin", None),
        ("begin", "Middle", None),
        ("Middle", "finish", None),
        ("finish", "StopEvent", None),
        ("finish", resource.id, "db"),
        ("StepFailedEvent", "recover", None),
        ("recover", "StopEvent", None),
    }


def test_event_node_details() -> None:
    class Flow:
        @step
        async def go(self, ev: StartEvent) -> Special | None:
            return None

    graph = get_workflow_representation(Flow)
    node = by_type(graph, "event")["Special"]
    assert isinstance(node, WorkflowEventNode)
    assert node.event_type == "Special"
    assert node.event_types == ["Special", "Middle"]
    assert node.is_subclass_of("Middle") and not node.is_subclass_of("StartEvent")
    assert node.event_schema is not None and "text" in node.event_schema["properties"]
    assert "NoneType" not in {n.id for n in graph.nodes}


def test_resource_node_metadata() -> None:
    graph = get_workflow_representation(Pipeline)
    (node,) = by_type(graph, "resource").values()
    assert isinstance(node, WorkflowResourceNode)
    assert node.id.startswith("resource_")
    assert node.label == node.type_name == "Database"
    assert node.getter_name == "get_database"
    assert node.description == "Open the database."
    assert node.source_file == __file__
    assert node.source_line is not None and node.source_line > 0


def test_shared_resource_is_one_node_with_an_edge_per_step() -> None:
    class Flow:
        @step
        async def one(
            self, ev: StartEvent, a: Annotated[Database, Resource(get_database)]
        ) -> Middle:
            return Middle()

        @step
        async def two(
            self, ev: Middle, b: Annotated[Database, Resource(get_database)]
        ) -> StopEvent:
            return StopEvent()

    graph = get_workflow_representation(Flow)
    (node,) = by_type(graph, "resource").values()
    assert {("one", node.id, "a"), ("two", node.id, "b")} <= edges(graph)


def test_hitl_workflow_has_external_node_and_bridge_edges() -> None:
    class Flow:
        @step
        async def ask(self, ev: StartEvent) -> Ask:
            return Ask()

        @step
        async def reply(self, ev: Answer) -> StopEvent:
            return StopEvent()

    graph = get_workflow_representation(Flow)
    external = by_type(graph, "external")
    assert set(external) == {"external_step"}
    assert isinstance(external["external_step"], WorkflowExternalNode)
    assert {("Ask", "external_step", None), ("external_step", "Answer", None)} <= edges(graph)


def test_no_external_node_without_input_required() -> None:
    graph = get_workflow_representation(Pipeline)
    assert "external_step" not in {n.id for n in graph.nodes}


def test_instance_is_read_through_step_configs() -> None:
    class Fake:
        workflow_name = "fake"

        def __init__(self, configs: dict[str, StepConfig]) -> None:
            self._configs = configs

        def step_configs(self) -> dict[str, StepConfig]:
            return self._configs

    configs = {"only": Pipeline.begin._step_config}  # type: ignore[attr-defined]
    graph = get_workflow_representation(Fake(configs))
    assert graph.name == "Fake"
    assert [n.id for n in graph.nodes if n.node_type == "step"] == ["only"]
    assert edges(graph) == {("StartEvent", "only", None), ("only", "Middle", None)}


def test_class_needing_arguments_is_read_from_its_functions() -> None:
    class NeedsArgs:
        def __init__(self, required: int) -> None:
            self.required = required

        @step
        async def go(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

    graph = get_workflow_representation(NeedsArgs)
    assert edges(graph) == {("StartEvent", "go", None), ("go", "StopEvent", None)}


def test_resource_configs_direct_and_nested(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "app.json").write_text(json.dumps({"db": {"url": "x"}}))

    def connect(
        settings: Annotated[Settings, ResourceConfig("app.json", path_selector="db")],
    ) -> Database:
        return Database()

    class Flow:
        @step
        async def go(
            self,
            ev: StartEvent,
            db: Annotated[Database, Resource(connect)],
            cfg: Annotated[
                Settings, ResourceConfig("app.json", "db", label="DB", description="where")
            ],
        ) -> StopEvent:
            return StopEvent()

    graph = get_workflow_representation(Flow)
    (config,) = by_type(graph, "resource_config").values()
    (resource,) = by_type(graph, "resource").values()
    assert isinstance(config, WorkflowResourceConfigNode)
    assert config.config_file == str((tmp_path / "app.json").resolve())
    assert config.path_selector == "db"
    assert config.config_value == {"url": "x"}
    assert config.type_name == "Settings"
    assert config.config_schema is not None and "url" in config.config_schema["properties"]
    assert config.label == "Settings"  # the first declaration has no label
    assert {
        ("go", resource.id, "db"),
        ("go", config.id, "cfg"),
        (resource.id, config.id, "settings"),
    } <= edges(graph)


def test_resource_config_label_description_and_missing_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "later.json")

    class Flow:
        @step
        async def go(
            self,
            ev: StartEvent,
            cfg: Annotated[Settings, ResourceConfig(missing, label="Later", description="d")],
        ) -> StopEvent:
            return StopEvent()

    (config,) = by_type(get_workflow_representation(Flow), "resource_config").values()
    assert (config.label, config.description) == ("Later", "d")
    assert config.config_file == missing
    assert config.config_value is None


# --- models -------------------------------------------------------------------


def test_truncated_label() -> None:
    node = WorkflowStepNode(id="s", label="abcdefgh")
    assert node.truncated_label(5) == "abcd*"
    assert node.truncated_label(8) == "abcdefgh"


def test_graph_round_trips_every_node_type() -> None:
    graph = WorkflowGraph(
        name="G",
        nodes=[
            WorkflowStepNode(id="s", label="s"),
            WorkflowEventNode(id="E", label="E", event_type="E", event_types=["E"]),
            WorkflowExternalNode(id="x", label="x"),
            WorkflowResourceNode(id="r", label="r"),
            WorkflowResourceConfigNode(id="c", label="c", config_file="c.json"),
            WorkflowGenericNode(id="g", label="g", node_type="agent", event_types=["Base"]),
        ],
        edges=[WorkflowGraphEdge(source="s", target="E")],
    )
    restored = WorkflowGraph.model_validate_json(graph.model_dump_json())
    assert [type(n) for n in restored.nodes] == [type(n) for n in graph.nodes]
    assert restored == graph
    generic = restored.nodes[-1]
    assert isinstance(generic, WorkflowGenericNode) and generic.is_subclass_of("Base")
    assert not WorkflowGenericNode(id="h", label="h", node_type="tool").is_subclass_of("Base")


def test_raw_dicts_pick_their_node_class() -> None:
    graph = WorkflowGraph.model_validate(
        {
            "name": "G",
            "nodes": [
                {"id": "r", "label": "r", "node_type": "resource"},
                {"id": "t", "label": "t", "node_type": "tool"},
            ],
            "edges": [],
        }
    )
    assert [type(n) for n in graph.nodes] == [WorkflowResourceNode, WorkflowGenericNode]
    with pytest.raises(ValidationError):
        WorkflowGraph.model_validate({"name": "G", "nodes": [{"id": "e"}], "edges": []})


def test_edge_label_defaults_to_none() -> None:
    assert WorkflowGraphEdge(source="a", target="b").label is None


# --- filter_by_node_type ------------------------------------------------------


def _event(node_id: str, label: str | None = None) -> WorkflowEventNode:
    return WorkflowEventNode(
        id=node_id, label=label or node_id, event_type=node_id, event_types=[node_id]
    )


def _graph(nodes: list[Any], pairs: list[tuple[str, str, str | None]]) -> WorkflowGraph:
    return WorkflowGraph(
        name="G",
        nodes=nodes,
        edges=[WorkflowGraphEdge(source=s, target=t, label=lbl) for s, t, lbl in pairs],
        description="doc",
    )


def test_filter_reconnects_through_removed_nodes_with_first_label() -> None:
    graph = _graph(
        [
            WorkflowStepNode(id="a", label="a"),
            _event("E1", "first"),
            _event("E2", "second"),
            WorkflowStepNode(id="b", label="b"),
        ],
        [("a", "E1", None), ("E1", "E2", None), ("E2", "b", None)],
    )
    filtered = graph.filter_by_node_type("event")
    assert [n.id for n in filtered.nodes] == ["a", "b"]
    assert edges(filtered) == {("a", "b", "first")}
    assert filtered.description == "doc" and filtered.name == "G"
    assert len(graph.nodes) == 4  # the original is untouched


def test_filter_keeps_direct_edges_and_drops_dead_ends() -> None:
    graph = _graph(
        [
            WorkflowStepNode(id="a", label="a"),
            WorkflowResourceNode(id="r", label="r"),
            WorkflowResourceConfigNode(id="c", label="c"),
            _event("E"),
        ],
        [("a", "r", "db"), ("r", "c", "cfg"), ("a", "E", None)],
    )
    assert edges(graph.filter_by_node_type("resource_config")) == {
        ("a", "r", "db"),
        ("a", "E", None),
    }
    filtered = graph.filter_by_node_type("event", "resource", "resource_config")
    assert [n.id for n in filtered.nodes] == ["a"]
    assert filtered.edges == []


def test_filter_deduplicates_and_handles_cycles() -> None:
    graph = _graph(
        [
            WorkflowStepNode(id="a", label="a"),
            _event("E1"),
            _event("E2"),
            WorkflowStepNode(id="b", label="b"),
        ],
        [
            ("a", "E1", None),
            ("a", "E2", None),
            ("E1", "E2", None),
            ("E2", "E1", None),
            ("E1", "b", None),
            ("E2", "b", None),
            ("b", "E1", None),
        ],
    )
    filtered = graph.filter_by_node_type("event")
    assert sorted((e.source, e.target, e.label) for e in filtered.edges) == [
        ("a", "b", "E1"),
        ("b", "b", "E1"),
    ]


def test_filter_unknown_type_changes_nothing() -> None:
    graph = _graph([WorkflowStepNode(id="a", label="a"), _event("E")], [("a", "E", "x")])
    filtered = graph.filter_by_node_type("nothing")
    assert filtered.nodes == graph.nodes and edges(filtered) == {("a", "E", "x")}


# --- Mermaid ------------------------------------------------------------------


def test_mermaid_of_a_small_graph() -> None:
    graph = _graph(
        [
            WorkflowStepNode(id="end", label="end"),
            _event("StartEvent"),
            WorkflowResourceNode(id="resource_1", label='Db "main"'),
        ],
        [("StartEvent", "end", None), ("end", "resource_1", "db|x"), ("end", "ghost", None)],
    )
    assert to_mermaid(graph) == (
        "flowchart TD\n"
        "    %% G\n"
        '    step_end("end"):::step\n'
        '    event_StartEvent["StartEvent"]:::event\n'
        '    resource_resource_1[("Db #quot;main#quot;")]:::resource\n'
        "    event_StartEvent --> step_end\n"
        '    step_end -->|"db#124;x"| resource_resource_1\n'
        "    classDef step fill:#e3f2fd,stroke:#1565c0\n"
        "    classDef event fill:#fff8e1,stroke:#f9a825\n"
        "    classDef resource fill:#e8f5e9,stroke:#2e7d32\n"
    )


def test_mermaid_ids_are_safe_and_unique() -> None:
    graph = _graph(
        [
            WorkflowStepNode(id="a-b", label="x"),
            WorkflowStepNode(id="a b", label="y"),
            WorkflowGenericNode(id="t", label="t", node_type="my tool"),
        ],
        [("a-b", "a b", None)],
    )
    text = to_mermaid(graph, direction="LR")
    assert text.startswith("flowchart LR\n")
    assert '    step_a_b("x"):::step\n' in text
    assert '    step_a_b_2("y"):::step\n' in text
    assert "    step_a_b --> step_a_b_2\n" in text
    assert '    my_tool_t["t"]:::my_tool\n' in text
    assert "    classDef my_tool fill:#eeeeee,stroke:#616161\n" in text
    with pytest.raises(ValueError, match="direction"):
        to_mermaid(graph, direction="sideways")


def test_mermaid_of_a_workflow_has_every_node_and_edge() -> None:
    text = to_mermaid(get_workflow_representation(Pipeline))
    assert '    step_begin("begin"):::step\n' in text
    assert '    event_Middle["Middle"]:::event\n' in text
    assert "    event_StartEvent --> step_begin\n" in text
    assert "    step_begin --> event_Middle\n" in text
    assert '-->|"db"| resource_resource_' in text
