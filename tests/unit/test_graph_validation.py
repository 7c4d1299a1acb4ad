"""``build_step_graph`` and ``validate_graph`` (stalkflow.representation.validate).

The cases are those of llama-index-workflows' tests/test_graph_validation.py;
the workflows are built without running, as their graphs are deliberately broken.
"""

from collections.abc import Iterable

from stalkflow.decorators import StepConfig, catch_error, step
from stalkflow.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StepFailedEvent,
    StopEvent,
)
from stalkflow.representation.validate import (
    GraphValidationError,
    StepGraph,
    build_step_graph,
    validate_graph,
)
from stalkflow.workflow import Workflow


class Island(Event):
    pass


class Processed(Event):
    pass


class CycleA(Event):
    pass


class CycleB(Event):
    pass


class Loop(Event):
    pass


class Reply(HumanResponseEvent):
    pass


def configs(cls: type[Workflow]) -> dict[str, StepConfig]:
    return cls().step_configs()


def errors_of(
    cls: type[Workflow], skip: Iterable[str] | None = None
) -> dict[str, GraphValidationError]:
    errors = validate_graph(configs(cls), start_event_class=StartEvent, skip_checks=skip)
    by_check = {e.check: e for e in errors}
    assert len(by_check) == len(errors), "one error per check"
    return by_check


# --- workflows ------------------------------------------------------------------


class Simple(Workflow):
    @step
    async def process(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result="done")


class WithIsland(Workflow):
    @step
    async def step_a(self, ev: StartEvent) -> Processed:
        return Processed()

    @step
    async def step_b(self, ev: Processed) -> StopEvent:
        return StopEvent()

    @step
    async def island(self, ev: Island) -> StopEvent:
        return StopEvent()


class HumanLoop(Workflow):
    @step
    async def ask(self, ev: StartEvent) -> InputRequiredEvent:
        return InputRequiredEvent()

    @step
    async def answer(self, ev: Reply) -> StopEvent:
        return StopEvent()

    @step
    async def record(self, ev: Reply) -> None:
        pass


class Dangling(Workflow):
    @step
    async def process(self, ev: StartEvent) -> Processed | Island | StopEvent:
        return Processed()


class DeadEndCycle(Workflow):
    @step
    async def entry(self, ev: StartEvent) -> CycleA | StopEvent:
        return CycleA()

    @step
    async def step_b(self, ev: CycleA) -> CycleB:
        return CycleB()

    @step
    async def step_c(self, ev: CycleB) -> CycleA:
        return CycleA()


class CycleWithExit(Workflow):
    @step
    async def step_a(self, ev: StartEvent) -> CycleA | StopEvent:
        return CycleA()

    @step
    async def step_b(self, ev: CycleA) -> CycleB | StopEvent:
        return CycleB()

    @step
    async def step_c(self, ev: CycleB) -> CycleA:
        return CycleA()


class Exempted(Workflow):
    @step
    async def entry(self, ev: StartEvent) -> CycleA | StopEvent:
        return CycleA()

    @step(skip_graph_checks=["dead_end"])
    async def step_b(self, ev: CycleA) -> CycleB:
        return CycleB()

    @step(skip_graph_checks=["dead_end"])
    async def step_c(self, ev: CycleB) -> CycleA:
        return CycleA()

    @step(skip_graph_checks=["reachability"])
    async def island(self, ev: Island) -> StopEvent:
        return StopEvent()


class Multiple(DeadEndCycle):
    @step
    async def island(self, ev: Island) -> StopEvent:
        return StopEvent()


class WithHandler(Workflow):
    @step
    async def work(self, ev: StartEvent) -> StopEvent:
        return StopEvent()

    @catch_error
    async def recover(self, ev: StepFailedEvent) -> StopEvent:
        return StopEvent()


# --- validate_graph -----------------------------------------------------------------


def test_valid_graphs_have_no_errors() -> None:
    for cls in (Simple, HumanLoop, CycleWithExit):
        assert errors_of(cls) == {}, cls.__name__


def test_unreachable_step() -> None:
    error = errors_of(WithIsland)["reachability"]
    assert error.step_names == ["island"]
    assert error.message == "Unreachable steps: island"
    assert error.hint == "Steps must be reachable from StartEvent or HumanResponseEvent."


def test_events_nobody_accepts_are_reported_together() -> None:
    error = errors_of(Dangling)["terminal_event"]
    assert error.message == "Events produced but never consumed: Island, Processed"
    assert error.hint == "Only StopEvent and InputRequiredEvent may be terminal."
    assert error.step_names == []


def test_a_cycle_with_no_way_out_is_a_dead_end() -> None:
    error = errors_of(DeadEndCycle)["dead_end"]
    # entry has a StopEvent branch; the cycle it feeds has none.
    assert error.step_names == ["step_b", "step_c"]
    assert error.message == "Dead-end steps: step_b, step_c"


def test_steps_exempt_themselves_from_a_check() -> None:
    assert errors_of(Exempted) == {}


def test_workflow_skips_whole_checks() -> None:
    assert "reachability" not in errors_of(WithIsland, skip={"reachability"})
    assert "terminal_event" not in errors_of(Dangling, skip={"terminal_event"})
    assert "dead_end" not in errors_of(DeadEndCycle, skip={"dead_end"})


def test_every_failure_is_reported_in_check_order() -> None:
    errors = validate_graph(configs(Multiple), start_event_class=StartEvent)
    detail = "\n".join(f"  - [{e.check}] {e.message}\n    {e.hint}" for e in errors)
    assert detail == (
        "  - [reachability] Unreachable steps: island\n"
        "    Steps must be reachable from StartEvent or HumanResponseEvent.\n"
        "  - [dead_end] Dead-end steps: step_b, step_c\n"
        "    Steps must have a path to StopEvent or InputRequiredEvent."
    )


def test_catch_error_handlers_are_reachable_only_when_named() -> None:
    steps = configs(WithHandler)
    unnamed = validate_graph(steps, start_event_class=StartEvent)
    assert [e.step_names for e in unnamed] == [["recover"]]
    assert validate_graph(steps, StartEvent, catch_error_steps=["recover"]) == []


# --- build_step_graph -----------------------------------------------------------------


def test_graph_of_no_steps() -> None:
    graph = build_step_graph(steps={}, start_event_class=StartEvent)
    assert isinstance(graph, StepGraph)
    assert graph.step_names == set()
    assert graph.outgoing == {}
    assert graph.event_types == set()
    assert StartEvent in graph.forward_reachable


def test_adjacency_and_event_types() -> None:
    graph = build_step_graph(configs(WithIsland), start_event_class=StartEvent)
    assert graph.step_names == {"step_a", "step_b", "island"}
    assert graph.event_types == {StartEvent, Processed, Island, StopEvent}
    assert graph.outgoing[StartEvent] == ["step_a"]
    assert graph.outgoing["step_a"] == [Processed]
    assert graph.outgoing[Processed] == ["step_b"]
    assert graph.outgoing["step_b"] == [StopEvent]


def test_none_returns_are_left_out() -> None:
    graph = build_step_graph(configs(HumanLoop), start_event_class=StartEvent)
    assert type(None) not in graph.event_types
    assert "record" not in graph.outgoing


def test_forward_reachability() -> None:
    graph = build_step_graph(configs(WithIsland), start_event_class=StartEvent)
    assert {"step_a", "step_b", Processed} <= graph.forward_reachable
    assert "island" not in graph.forward_reachable
    assert Island not in graph.forward_reachable


def test_human_responses_seed_forward_reachability() -> None:
    graph = build_step_graph(configs(HumanLoop), start_event_class=StartEvent)
    assert {Reply, "answer", "record"} <= graph.forward_reachable


def test_reverse_reachability() -> None:
    class WithDeadEnd(Workflow):
        @step
        async def step_a(self, ev: StartEvent) -> Processed:
            return Processed()

        @step
        async def step_b(self, ev: Processed) -> StopEvent:
            return StopEvent()

        @step
        async def dead_end(self, ev: StartEvent) -> Loop:
            return Loop()

        @step
        async def loop(self, ev: Loop) -> Loop:
            return Loop()

    graph = build_step_graph(configs(WithDeadEnd), start_event_class=StartEvent)
    assert {"step_a", "step_b"} <= graph.reverse_reachable
    assert not {"dead_end", "loop"} & graph.reverse_reachable
