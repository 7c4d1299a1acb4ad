"""Structural checks of a workflow, as pure functions over its step configs.

Every function takes the workflow's name (used in messages only), its steps as
``{step name: StepConfig}`` and, for the graph checks, the names of the checks
to skip. Nothing here imports the ``Workflow`` class, so the checks can be run
on hand-built configs.

The checks of :func:`validate_workflow` run in this order and the first failing
group raises:

1. the workflow has steps (``WorkflowConfigurationError``);
2. exactly one StartEvent type is accepted, then exactly one StopEvent type is
   returned (``WorkflowConfigurationError``);
3. event connectivity: no step accepts a StopEvent, every consumed event is
   produced, every produced event is consumed;
4. ``@catch_error`` handlers: ``max_recoveries``, then the handler set as a whole;
5. graph checks (reachability, terminal events, dead ends), all reported at once;
6. resource configs load and validate.

Events are compared by exact type, as the engine routes them.

This module holds the first checks and the whole sequence; the ``@catch_error``
rules are in :mod:`.catch_error`, the graph checks in :mod:`.graph_checks`
(their public names are importable from here too, as from upstream's
``workflows.representation.validate``: ``build_step_graph``, ``validate_graph``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from stalkflow.decorators import StepConfig
from stalkflow.errors import WorkflowConfigurationError, WorkflowValidationError
from stalkflow.events import (
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StepFailedEvent,
    StopEvent,
)
from stalkflow.representation._step_types import is_subclass, returned, type_names
from stalkflow.representation.catch_error import catch_error_handler_for, check_catch_error
from stalkflow.representation.graph_checks import (
    GRAPH_CHECKS,
    GraphValidationError,
    StepGraph,
    build_step_graph,
    graph_errors,
    unknown_graph_checks,
    validate_graph,
)
from stalkflow.resource import check_resource_configs

__all__ = [
    "GRAPH_CHECKS",
    "GraphValidationError",
    "StepGraph",
    "build_step_graph",
    "catch_error_handler_for",
    "find_start_event",
    "find_stop_event",
    "graph_errors",
    "unknown_graph_checks",
    "validate_graph",
    "validate_workflow",
]


def _set_repr(types: Iterable[type]) -> str:
    return "{" + ", ".join(repr(t) for t in sorted(types, key=lambda t: t.__qualname__)) + "}"


# --- start and stop events ---------------------------------------------------


def find_start_event(workflow_name: str, steps: Mapping[str, StepConfig]) -> type[StartEvent]:
    """Return the one StartEvent class the steps accept.

    Raises:
        WorkflowConfigurationError: if no step accepts a StartEvent, or if steps
            accept more than one StartEvent class.
    """
    found: set[type[StartEvent]] = set()
    for cfg in steps.values():
        found.update(t for t in cfg.accepted_events if is_subclass(t, StartEvent))
    if not found:
        raise WorkflowConfigurationError(
            "At least one Event of type StartEvent must be received by any step. "
            f"(Workflow '{workflow_name}' has no @step that accepts StartEvent.)"
        )
    if len(found) > 1:
        raise WorkflowConfigurationError(
            f"Only one type of StartEvent is allowed per workflow, found {len(found)}: "
            f"{_set_repr(found)} in workflow '{workflow_name}'."
        )
    return found.pop()


def find_stop_event(workflow_name: str, steps: Mapping[str, StepConfig]) -> type[StopEvent]:
    """Return the one StopEvent class the steps return.

    Raises:
        WorkflowConfigurationError: if no step returns a StopEvent, or if steps
            return more than one StopEvent class.
    """
    found: set[type[StopEvent]] = set()
    for cfg in steps.values():
        found.update(t for t in cfg.return_types if is_subclass(t, StopEvent))
    if not found:
        raise WorkflowConfigurationError(
            "At least one Event of type StopEvent must be returned by any step. "
            f"(Workflow '{workflow_name}' has no @step that returns StopEvent.)"
        )
    if len(found) > 1:
        raise WorkflowConfigurationError(
            f"Only one type of StopEvent is allowed per workflow, found {len(found)}: "
            f"{_set_repr(found)} in workflow '{workflow_name}'."
        )
    return found.pop()


# --- event connectivity ------------------------------------------------------


def _check_connectivity(steps: Mapping[str, StepConfig], start: type[StartEvent]) -> bool:
    """Check who produces and consumes each event; return whether HITL is used."""
    produced: set[Any] = {start}
    consumed: set[Any] = set()
    accepting_stop: list[str] = []
    for name, cfg in steps.items():
        if any(is_subclass(t, StopEvent) for t in cfg.accepted_events):
            accepting_stop.append(name)
        consumed.update(cfg.accepted_events)
        produced.update(returned(cfg))

    if accepting_stop:
        plural = "s" if len(accepting_stop) > 1 else ""
        quoted = "', '".join(accepting_stop)
        raise WorkflowValidationError(
            f"Step{plural} '{quoted}' cannot accept StopEvent. "
            "StopEvent signals the end of the workflow. Use a different Event type instead."
        )

    boundary = (InputRequiredEvent, HumanResponseEvent, StopEvent)
    never_produced = [
        t for t in consumed - produced if not is_subclass(t, (*boundary, StepFailedEvent))
    ]
    if never_produced:
        raise WorkflowValidationError(
            f"The following events are consumed but never produced: {type_names(never_produced)}"
        )
    never_consumed = [t for t in produced - consumed if not is_subclass(t, boundary)]
    if never_consumed:
        raise WorkflowValidationError(
            f"The following events are produced but never consumed: {type_names(never_consumed)}"
        )
    # As upstream: only the exact base classes mark a workflow as human-in-the-loop.
    return InputRequiredEvent in produced or HumanResponseEvent in consumed


# --- everything --------------------------------------------------------------


def validate_workflow(
    workflow_name: str,
    steps: Mapping[str, StepConfig],
    skip_graph_checks: Iterable[str] = frozenset(),
    *,
    validate_resource_configs: bool = True,
) -> bool:
    """Run every structural check (see the module docstring for the order).

    Args:
        workflow_name: Name used in messages; upstream uses the class ``__name__``.
        steps: ``{step name: StepConfig}``, handlers included.
        skip_graph_checks: Graph checks to skip for the whole workflow.
        validate_resource_configs: Also load every ``ResourceConfig`` the steps
            use, directly or through factories (factories are not called).

    Returns:
        True if the workflow uses human-in-the-loop: it returns an
        ``InputRequiredEvent`` or accepts a ``HumanResponseEvent`` (the exact
        classes, as upstream).

    Raises:
        WorkflowConfigurationError: no steps, or not exactly one StartEvent /
            StopEvent class.
        WorkflowValidationError: any other failed check.
    """
    if not steps:
        raise WorkflowConfigurationError(
            f"Workflow '{workflow_name}' has no configured steps. "
            "Did you forget to annotate methods with @step or to register "
            "free-function steps via @step(workflow=...)?"
        )
    start = find_start_event(workflow_name, steps)
    find_stop_event(workflow_name, steps)
    uses_hitl = _check_connectivity(steps, start)
    check_catch_error(steps)
    failures = graph_errors(steps, start, skip_graph_checks)
    if failures:
        detail = "\n".join(failure.format() for failure in failures)
        raise WorkflowValidationError(f"Graph validation failed:\n{detail}")
    if validate_resource_configs:
        problems = check_resource_configs({n: c.resources for n, c in steps.items()})
        if problems:
            raise WorkflowValidationError(
                "Resource config validation failed:\n" + "\n".join(f"  - {p}" for p in problems)
            )
    return uses_hitl
