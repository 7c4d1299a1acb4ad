"""The pure core: routing by exact type, state paths, run rules, delivery ids."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from stalkflow.core.deliveries import Delivery, Waiter
from stalkflow.core.ids import child_delivery_id, new_run_id
from stalkflow.core.paths import get_path, set_path
from stalkflow.core.routing import RoutingTable
from stalkflow.core.runs import is_stalled, timeout_message
from stalkflow.errors import WorkflowRuntimeError
from stalkflow.events import Event, HumanResponseEvent, StartEvent


class A(Event):
    n: int = 0


class SubA(A):
    pass


class B(Event):
    pass


def table() -> RoutingTable:
    return RoutingTable({"first": [A], "second": [A, B], "third": [B]})


def test_an_event_goes_to_every_step_that_accepts_its_exact_type() -> None:
    assert table().route(A()).steps == ("first", "second")
    assert table().route(B()).steps == ("second", "third")


def test_a_subclass_is_not_routed_to_a_step_that_accepts_its_parent() -> None:
    route = table().route(SubA())
    assert route.steps == ()
    assert route.unhandled


def test_a_target_step_restricts_routing() -> None:
    assert table().route(A(), step="second").steps == ("second",)


def test_send_to_an_unknown_or_unaccepting_step_names_the_problem() -> None:
    with pytest.raises(WorkflowRuntimeError, match="Step nope does not exist"):
        table().check_target(A(), "nope")
    with pytest.raises(WorkflowRuntimeError, match="Step third does not accept event of type"):
        table().check_target(A(), "third")


def _waiter(step: str, requirements: dict[str, object]) -> Waiter:
    origin = Delivery("r", "wf", step, StartEvent(), "d1")
    return Waiter("w1", HumanResponseEvent, requirements, origin)


def test_a_matching_waiter_takes_the_event_instead_of_its_step() -> None:
    routing = RoutingTable({"ask": [StartEvent], "answer": [HumanResponseEvent]})
    waiter = _waiter("answer", {"user": "ann"})
    route = routing.route(HumanResponseEvent(user="ann"), waiters=[waiter])
    assert route.waiters == (waiter,)
    assert route.steps == ()


def test_a_waiter_whose_requirements_differ_does_not_match() -> None:
    routing = RoutingTable({"answer": [HumanResponseEvent]})
    route = routing.route(HumanResponseEvent(user="bob"), waiters=[_waiter("x", {"user": "ann"})])
    assert route.waiters == ()
    assert route.steps == ("answer",)


def test_paths_traverse_dicts_lists_and_attributes() -> None:
    state = {"a": {"b": [10, {"c": 3}]}}
    assert get_path(state, "a.b.0") == 10
    assert get_path(state, "a.b.1.c") == 3
    assert get_path(state, "") is state


def test_a_missing_path_raises_value_error_unless_a_default_is_given() -> None:
    with pytest.raises(ValueError, match=re.escape("Path 'a.x' not found in state")):
        get_path({"a": {}}, "a.x")
    assert get_path({"a": {}}, "a.x", default=None) is None


def test_set_creates_missing_levels_and_rejects_an_empty_path() -> None:
    state: dict[str, object] = {}
    set_path(state, "a.b.c", 1)
    assert state == {"a": {"b": {"c": 1}}}
    with pytest.raises(ValueError, match="Path cannot be empty"):
        set_path(state, "", 1)


def test_set_through_a_primitive_surfaces_the_attribute_error() -> None:
    with pytest.raises(AttributeError):
        set_path({"prim": 5}, "prim.x", 1)


def test_child_delivery_ids_are_derived_so_a_reexecution_repeats_them() -> None:
    assert child_delivery_id("p", 0, "s") == child_delivery_id("p", 0, "s")
    assert child_delivery_id("p", 0, "s") != child_delivery_id("p", 1, "s")
    assert child_delivery_id("p", 0, "s") != child_delivery_id("q", 0, "s")


def test_run_ids_have_upstreams_shape() -> None:
    run_id = new_run_id()
    assert len(run_id) == 10 and run_id.isalnum()


def test_a_run_with_nothing_in_flight_and_no_waiter_is_stalled_unless_it_takes_input() -> None:
    assert is_stalled(in_flight=0, waiters=0, hitl=False)
    assert not is_stalled(in_flight=1, waiters=0, hitl=False)
    assert not is_stalled(in_flight=0, waiters=1, hitl=False)
    assert not is_stalled(in_flight=0, waiters=0, hitl=True)


def test_timeout_message_names_active_steps() -> None:
    assert timeout_message(1.0, ["b", "a", "a"]) == (
        "Operation timed out after 1.0 seconds. Currently active steps: a, b"
    )
    assert timeout_message(2.0, []) == "Operation timed out after 2.0 seconds. No steps active"


def test_classes_of_a_script_are_named_after_the_module_workers_import(tmp_path: Path) -> None:
    # ``python examples/flow.py`` must name its workflow as ``-w examples.flow`` does
    package = tmp_path / "examples"
    package.mkdir()
    (package / "flow.py").write_text(
        "from stalkflow import Workflow, step\n"
        "from stalkflow.events import StartEvent, StopEvent\n"
        "class Flow(Workflow):\n"
        "    @step\n"
        "    async def only(self, ev: StartEvent) -> StopEvent:\n"
        "        return StopEvent()\n"
        "print(Flow().workflow_name)\n"
    )
    by_path = subprocess.run(
        [sys.executable, "examples/flow.py"], cwd=tmp_path, capture_output=True, text=True
    )
    by_module = subprocess.run(
        [sys.executable, "-m", "examples.flow"], cwd=tmp_path, capture_output=True, text=True
    )
    assert by_path.stdout.strip() == "examples.flow.Flow", by_path.stderr
    assert by_module.stdout.strip() == "examples.flow.Flow", by_module.stderr
