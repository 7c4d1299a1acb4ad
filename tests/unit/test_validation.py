"""Structural validation of workflows (stalkflow.representation.validate).

The steps are built as StepConfig objects directly, so these tests exercise the
rules without the Workflow class.
"""

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel

from stalkflow.decorators import StepConfig, inspect_step
from stalkflow.errors import WorkflowConfigurationError, WorkflowValidationError
from stalkflow.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StepFailedEvent,
    StopEvent,
)
from stalkflow.representation.validate import (
    catch_error_handler_for,
    find_start_event,
    find_stop_event,
    graph_errors,
    unknown_graph_checks,
    validate_workflow,
)
from stalkflow.resource import Resource, ResourceConfig, ResourceDefinition


class A(Event):
    pass


class B(Event):
    pass


class C(Event):
    pass


class Island(Event):
    pass


class MyStart(StartEvent):
    pass


class MyStop(StopEvent):
    pass


class MyInput(InputRequiredEvent):
    pass


class MyResponse(HumanResponseEvent):
    pass


def cfg(
    accepts: Sequence[Any],
    returns: Sequence[Any],
    *,
    skip: Iterable[Any] = (),
    resources: Iterable[ResourceDefinition] = (),
) -> StepConfig:
    return StepConfig(
        accepted_events=list(accepts),
        event_name="ev",
        return_types=list(returns),
        context_parameter=None,
        num_workers=4,
        retry_policy=None,
        resources=list(resources),
        skip_graph_checks=list(skip),
    )


def handler(
    returns: Sequence[Any] = (StopEvent,), for_steps: list[str] | None = None, budget: Any = 1
) -> StepConfig:
    config = cfg([StepFailedEvent], returns)
    config.role = "catch_error"
    config.catch_error_for_steps = for_steps
    config.catch_error_max_recoveries = budget
    return config


SIMPLE = {"start": cfg([StartEvent], [A]), "finish": cfg([A], [StopEvent])}


def fails(steps: dict[str, StepConfig], message: str, *, skip: Iterable[str] = ()) -> None:
    with pytest.raises(WorkflowValidationError) as info:
        validate_workflow("Flow", steps, frozenset(skip))
    assert str(info.value) == message


# --- start / stop events -------------------------------------------------------


def test_start_and_stop_events_are_found() -> None:
    steps = {"go": cfg([MyStart], [B]), "end": cfg([B], [MyStop, type(None)])}
    assert find_start_event("Flow", steps) is MyStart
    assert find_stop_event("Flow", steps) is MyStop


def test_missing_start_event_message() -> None:
    with pytest.raises(WorkflowConfigurationError) as info:
        find_start_event("Flow", {"a": cfg([A], [StopEvent])})
    assert str(info.value) == (
        "At least one Event of type StartEvent must be received by any step. "
        "(Workflow 'Flow' has no @step that accepts StartEvent.)"
    )


def test_missing_stop_event_message() -> None:
    with pytest.raises(WorkflowConfigurationError) as info:
        find_stop_event("Flow", {"a": cfg([StartEvent], [type(None)])})
    assert str(info.value) == (
        "At least one Event of type StopEvent must be returned by any step. "
        "(Workflow 'Flow' has no @step that returns StopEvent.)"
    )


def test_several_start_events_rejected() -> None:
    steps = {"one": cfg([MyStart], [type(None)]), "two": cfg([StartEvent], [StopEvent])}
    with pytest.raises(WorkflowConfigurationError) as info:
        find_start_event("Flow", steps)
    message = str(info.value)
    assert message.startswith("Only one type of StartEvent is allowed per workflow, found 2: {")
    assert "MyStart" in message and message.endswith(" in workflow 'Flow'.")


def test_several_stop_events_rejected() -> None:
    steps = {"one": cfg([StartEvent], [MyStop]), "two": cfg([StartEvent], [StopEvent])}
    with pytest.raises(
        WorkflowConfigurationError,
        match="Only one type of StopEvent is allowed per workflow, found 2",
    ):
        find_stop_event("Flow", steps)


def test_non_class_return_annotations_are_ignored_when_finding_events() -> None:
    steps = {"go": cfg([StartEvent], [list[int], StopEvent])}
    assert find_stop_event("Flow", steps) is StopEvent


# --- order of the checks ------------------------------------------------------


def test_no_steps_is_a_configuration_error() -> None:
    with pytest.raises(WorkflowConfigurationError) as info:
        validate_workflow("Flow", {}, frozenset())
    assert str(info.value).startswith("Workflow 'Flow' has no configured steps.")


def test_start_event_is_checked_before_stop_event() -> None:
    with pytest.raises(WorkflowConfigurationError, match="StartEvent must be received"):
        validate_workflow("Flow", {"a": cfg([A], [type(None)])}, frozenset())


def test_stop_event_is_checked_before_connectivity() -> None:
    steps = {"a": cfg([StartEvent], [B])}  # B is never consumed as well
    with pytest.raises(WorkflowConfigurationError, match="StopEvent must be returned"):
        validate_workflow("Flow", steps, frozenset())


def test_connectivity_is_checked_before_catch_error() -> None:
    steps = {**SIMPLE, "orphan": cfg([B], [StopEvent]), "h": handler(for_steps=["nope"])}
    fails(steps, "The following events are consumed but never produced: B")


def test_catch_error_is_checked_before_graph() -> None:
    steps = {**SIMPLE, "island": cfg([Island], [Island]), "h": handler(for_steps=["nope"])}
    fails(steps, "@catch_error handler 'h' lists unknown step 'nope' in for_steps.")


def test_graph_is_checked_before_resource_configs(tmp_path: Path) -> None:
    broken = ResourceDefinition(
        name="settings",
        resource=ResourceConfig(str(tmp_path / "missing.json")),
        type_annotation=Settings,
    )
    steps = {
        "start": cfg([StartEvent], [StopEvent], resources=[broken]),
        "loop": cfg([Island], [Island]),
    }
    with pytest.raises(WorkflowValidationError, match=r"^Graph validation failed"):
        validate_workflow("Flow", steps, frozenset())


# --- event connectivity -------------------------------------------------------


def test_valid_workflow_passes_and_is_not_hitl() -> None:
    assert validate_workflow("Flow", SIMPLE, frozenset()) is False


def test_step_accepting_stop_event_is_rejected() -> None:
    steps = {**SIMPLE, "bad_step": cfg([StopEvent], [StopEvent])}
    fails(
        steps,
        "Step 'bad_step' cannot accept StopEvent. StopEvent signals the end of the workflow. "
        "Use a different Event type instead.",
    )


def test_several_steps_accepting_stop_events_are_listed() -> None:
    steps = {"go": cfg([StartEvent], [MyStop]), "x": cfg([MyStop], [A]), "y": cfg([A, MyStop], [])}
    with pytest.raises(WorkflowValidationError, match=r"^Steps 'x', 'y' cannot accept StopEvent\."):
        validate_workflow("Flow", steps, frozenset())


def test_consumed_but_never_produced_lists_sorted_names() -> None:
    steps = {**SIMPLE, "x": cfg([C, B], [StopEvent])}
    fails(steps, "The following events are consumed but never produced: B, C")


def test_produced_but_never_consumed() -> None:
    steps = {"go": cfg([StartEvent], [A, StopEvent])}
    fails(steps, "The following events are produced but never consumed: A")


def test_non_event_return_type_counts_as_produced_but_never_consumed() -> None:
    steps = {"go": cfg([StartEvent], [str, StopEvent])}
    fails(steps, "The following events are produced but never consumed: str")


def test_step_failed_event_needs_no_producer() -> None:
    steps = {**SIMPLE, "h": handler()}
    assert validate_workflow("Flow", steps, frozenset()) is False


def test_hitl_events_are_exempt_and_detected() -> None:
    steps = {
        "ask": cfg([StartEvent], [InputRequiredEvent]),
        "answer": cfg([HumanResponseEvent], [StopEvent]),
    }
    assert validate_workflow("Flow", steps, frozenset()) is True


def test_consuming_a_human_response_alone_is_hitl() -> None:
    steps = {**SIMPLE, "answer": cfg([HumanResponseEvent], [StopEvent])}
    assert validate_workflow("Flow", steps, frozenset()) is True


def test_hitl_detection_uses_exact_base_classes_like_upstream() -> None:
    steps = {"ask": cfg([StartEvent], [MyInput]), "answer": cfg([MyResponse], [StopEvent])}
    assert validate_workflow("Flow", steps, frozenset()) is False


def test_decorated_signature_with_optional_return_validates() -> None:
    def begin(ev: StartEvent) -> A | None: ...

    def end(ev: A) -> StopEvent: ...

    steps = {
        "begin": inspect_step(begin, {}, num_workers=1, retry_policy=None),
        "end": inspect_step(end, {}, num_workers=1, retry_policy=None),
    }
    assert validate_workflow("Flow", steps, frozenset()) is False


# --- @catch_error rules -------------------------------------------------------


def test_two_wildcard_handlers_rejected() -> None:
    steps = {**SIMPLE, "h2": handler(), "h1": handler()}
    fails(steps, "Only one wildcard @catch_error handler is allowed per workflow, found 2: h1, h2")


def test_handler_cannot_cover_a_handler() -> None:
    steps = {**SIMPLE, "h1": handler(for_steps=["h2"]), "h2": handler(for_steps=["start"])}
    fails(steps, "@catch_error handler 'h1' cannot cover another handler step 'h2'.")


def test_handler_cannot_cover_itself() -> None:
    steps = {**SIMPLE, "h": handler(for_steps=["h"])}
    fails(steps, "@catch_error handler 'h' cannot cover another handler step 'h'.")


def test_step_claimed_twice_rejected() -> None:
    steps = {**SIMPLE, "h1": handler(for_steps=["start"]), "h2": handler(for_steps=["start"])}
    fails(steps, "Step 'start' is claimed by two @catch_error handlers: 'h1' and 'h2'.")


def test_handler_errors_are_reported_together() -> None:
    steps = {
        **SIMPLE,
        "w1": handler(),
        "w2": handler(),
        "h": handler(for_steps=["ghost", "w1"]),
    }
    fails(
        steps,
        "Only one wildcard @catch_error handler is allowed per workflow, found 2: w1, w2\n"
        "@catch_error handler 'h' lists unknown step 'ghost' in for_steps.\n"
        "@catch_error handler 'h' cannot cover another handler step 'w1'.",
    )


@pytest.mark.parametrize("budget", [0, -3, 1.5, True, None])
def test_invalid_max_recoveries_rejected(budget: Any) -> None:
    steps = {**SIMPLE, "h": handler(budget=budget), "w1": handler(), "w2": handler()}
    fails(
        steps, f"@catch_error handler 'h' has max_recoveries={budget!r}; must be an integer >= 1."
    )


def test_handler_producing_events_is_reachable_and_valid() -> None:
    steps = {**SIMPLE, "recover": handler(returns=[A])}
    assert validate_workflow("Flow", steps, frozenset()) is False


def test_handler_lookup_prefers_scoped_then_wildcard() -> None:
    steps = {
        **SIMPLE,
        "other": cfg([A], [StopEvent]),
        "wild": handler(),
        "scoped": handler(for_steps=["finish"]),
    }
    assert catch_error_handler_for("finish", steps) == "scoped"
    assert catch_error_handler_for("start", steps) == "wild"
    assert catch_error_handler_for("scoped", steps) is None
    assert catch_error_handler_for("wild", steps) is None
    assert catch_error_handler_for("missing", steps) is None


def test_handler_lookup_without_wildcard() -> None:
    steps = {**SIMPLE, "scoped": handler(for_steps=["finish"])}
    assert catch_error_handler_for("start", steps) is None
    assert catch_error_handler_for("finish", steps) == "scoped"


# --- graph checks -------------------------------------------------------------


REACH = (
    "  - [reachability] Unreachable steps: {}\n"
    "    Steps must be reachable from StartEvent or HumanResponseEvent."
)
TERMINAL = (
    "  - [terminal_event] Events produced but never consumed: {}\n"
    "    Only StopEvent and InputRequiredEvent may be terminal."
)
DEAD = (
    "  - [dead_end] Dead-end steps: {}\n"
    "    Steps must have a path to StopEvent or InputRequiredEvent."
)

CYCLE = {
    "entry": cfg([StartEvent], [A, StopEvent]),
    "step_b": cfg([A], [B]),
    "step_c": cfg([B], [A]),
}


def test_unreachable_step() -> None:
    steps = {**SIMPLE, "island": cfg([Island], [Island, StopEvent])}
    fails(steps, "Graph validation failed:\n" + REACH.format("island"))


def test_dead_end_cycle() -> None:
    fails(CYCLE, "Graph validation failed:\n" + DEAD.format("step_b, step_c"))


def test_cycle_with_an_exit_passes() -> None:
    steps = {**CYCLE, "step_b": cfg([A], [B, StopEvent])}
    assert validate_workflow("Flow", steps, frozenset()) is False


def test_graph_errors_are_gathered_in_order() -> None:
    steps = {**CYCLE, "island": cfg([Island], [Island, StopEvent])}
    fails(
        steps,
        "Graph validation failed:\n"
        + REACH.format("island")
        + "\n"
        + DEAD.format("step_b, step_c"),
    )


def test_produced_human_response_without_consumer_is_a_terminal_event_failure() -> None:
    steps = {"go": cfg([StartEvent], [MyResponse, StopEvent])}
    fails(steps, "Graph validation failed:\n" + TERMINAL.format("MyResponse"))


def test_all_three_graph_checks_reported() -> None:
    steps = {**CYCLE, "go2": cfg([A], [MyResponse]), "island": cfg([Island], [Island, StopEvent])}
    message = "Graph validation failed:\n" + "\n".join(
        [REACH.format("island"), TERMINAL.format("MyResponse"), DEAD.format("go2, step_b, step_c")]
    )
    fails(steps, message)


def test_human_response_steps_are_reachable() -> None:
    steps = {
        "ask": cfg([StartEvent], [InputRequiredEvent]),
        "answer": cfg([MyResponse], [StopEvent]),
        "note": cfg([MyResponse], [type(None)]),
    }
    assert validate_workflow("Flow", steps, frozenset()) is True


def test_graph_checks_skipped_workflow_wide() -> None:
    steps = {**CYCLE, "go2": cfg([A], [MyResponse]), "island": cfg([Island], [Island, StopEvent])}
    skip = {"reachability", "terminal_event", "dead_end"}
    assert validate_workflow("Flow", steps, frozenset(skip)) is False
    fails(
        steps,
        "Graph validation failed:\n" + REACH.format("island"),
        skip={"dead_end", "terminal_event"},
    )


def test_reachability_skipped_per_step() -> None:
    steps = {**SIMPLE, "island": cfg([Island], [Island], skip=["reachability"])}
    fails(steps, "Graph validation failed:\n" + DEAD.format("island"))
    steps["island"] = cfg([Island], [Island], skip=["reachability", "dead_end"])
    assert validate_workflow("Flow", steps, frozenset()) is False


def test_dead_end_skipped_per_step() -> None:
    steps = {**CYCLE, "step_b": cfg([A], [B], skip=["dead_end"])}
    fails(steps, "Graph validation failed:\n" + DEAD.format("step_c"))


def test_graph_errors_api_returns_each_failure() -> None:
    steps = {**CYCLE, "island": cfg([Island], [Island, StopEvent])}
    errors = graph_errors(steps, StartEvent)
    assert [(e.check, e.step_names) for e in errors] == [
        ("reachability", ["island"]),
        ("dead_end", ["step_b", "step_c"]),
    ]
    assert graph_errors(steps, StartEvent, {"reachability", "dead_end"}) == []


def test_unknown_graph_check_names() -> None:
    unknown_graph_checks({"reachability", "dead_end", "terminal_event"})
    with pytest.raises(WorkflowValidationError) as info:
        unknown_graph_checks({"nope", "also_bad", "dead_end"})
    assert str(info.value) == (
        "Unknown graph check names: also_bad, nope. "
        "Valid names are: dead_end, reachability, terminal_event"
    )


# --- resource configs ---------------------------------------------------------


class Settings(BaseModel):
    url: str


def _with_config(path: str) -> dict[str, StepConfig]:
    definition = ResourceDefinition(
        name="settings", resource=ResourceConfig(path), type_annotation=Settings
    )
    return {"go": cfg([StartEvent], [StopEvent], resources=[definition])}


def test_valid_resource_config_passes(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    path.write_text(json.dumps({"url": "x"}))
    assert validate_workflow("Flow", _with_config(str(path)), frozenset()) is False


def test_invalid_resource_config_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"nope": 1}))
    with pytest.raises(WorkflowValidationError) as info:
        validate_workflow("Flow", _with_config(str(path)), frozenset())
    message = str(info.value)
    assert message.startswith(
        "Resource config validation failed:\n  - In step 'go', parameter 'settings': "
    )
    assert "url" in message


def test_resource_config_check_can_be_disabled(tmp_path: Path) -> None:
    steps = _with_config(str(tmp_path / "missing.json"))
    assert validate_workflow("Flow", steps, frozenset(), validate_resource_configs=False) is False
    with pytest.raises(WorkflowValidationError, match="Resource config validation failed"):
        validate_workflow("Flow", steps, frozenset())


def test_config_needed_by_a_factory_is_checked(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.json")

    def make_client(settings: Annotated[Settings, ResourceConfig(missing)]) -> str:
        return settings.url

    definition = ResourceDefinition(
        name="client", resource=Resource(make_client), type_annotation=str
    )
    steps = {"go": cfg([StartEvent], [StopEvent], resources=[definition])}
    with pytest.raises(WorkflowValidationError) as info:
        validate_workflow("Flow", steps, frozenset())
    assert "In step 'go', parameter 'client' (" in str(info.value)
