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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

from stalkflow.decorators import StepConfig, WorkflowGraphCheck
from stalkflow.errors import WorkflowConfigurationError, WorkflowValidationError
from stalkflow.events import (
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StepFailedEvent,
    StopEvent,
)
from stalkflow.resource import check_resource_configs

__all__ = [
    "GRAPH_CHECKS",
    "GraphValidationError",
    "catch_error_handler_for",
    "find_start_event",
    "find_stop_event",
    "graph_errors",
    "unknown_graph_checks",
    "validate_workflow",
]

#: The names accepted by ``skip_graph_checks``.
GRAPH_CHECKS: frozenset[str] = frozenset(get_args(WorkflowGraphCheck))

_NoneType = type(None)


def _is_subclass(candidate: Any, bases: type | tuple[type, ...]) -> bool:
    """``issubclass`` that answers False for non-classes (``list[int]``, ``Any`` ...)."""
    try:
        return isinstance(candidate, type) and issubclass(candidate, bases)
    except TypeError:
        return False


def _type_name(candidate: Any) -> str:
    return str(getattr(candidate, "__name__", candidate))


def _names(types: Iterable[Any]) -> str:
    return ", ".join(sorted(_type_name(t) for t in types))


def _set_repr(types: Iterable[type]) -> str:
    return "{" + ", ".join(repr(t) for t in sorted(types, key=lambda t: t.__qualname__)) + "}"


def _returned(cfg: StepConfig) -> list[Any]:
    return [t for t in cfg.return_types if t is not _NoneType]


# --- start and stop events ---------------------------------------------------


def find_start_event(workflow_name: str, steps: Mapping[str, StepConfig]) -> type[StartEvent]:
    """Return the one StartEvent class the steps accept.

    Raises:
        WorkflowConfigurationError: if no step accepts a StartEvent, or if steps
            accept more than one StartEvent class.
    """
    found: set[type[StartEvent]] = set()
    for cfg in steps.values():
        found.update(t for t in cfg.accepted_events if _is_subclass(t, StartEvent))
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
        found.update(t for t in cfg.return_types if _is_subclass(t, StopEvent))
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


def unknown_graph_checks(names: Iterable[str]) -> None:
    """Raise ``WorkflowValidationError`` if ``names`` holds anything but a graph check name."""
    unknown = set(names) - GRAPH_CHECKS
    if unknown:
        raise WorkflowValidationError(
            f"Unknown graph check names: {', '.join(sorted(unknown))}. "
            f"Valid names are: {', '.join(sorted(GRAPH_CHECKS))}"
        )


# --- event connectivity ------------------------------------------------------


def _check_connectivity(steps: Mapping[str, StepConfig], start: type[StartEvent]) -> bool:
    """Check who produces and consumes each event; return whether HITL is used."""
    produced: set[Any] = {start}
    consumed: set[Any] = set()
    accepting_stop: list[str] = []
    for name, cfg in steps.items():
        if any(_is_subclass(t, StopEvent) for t in cfg.accepted_events):
            accepting_stop.append(name)
        consumed.update(cfg.accepted_events)
        produced.update(_returned(cfg))

    if accepting_stop:
        plural = "s" if len(accepting_stop) > 1 else ""
        quoted = "', '".join(accepting_stop)
        raise WorkflowValidationError(
            f"Step{plural} '{quoted}' cannot accept StopEvent. "
            "StopEvent signals the end of the workflow. Use a different Event type instead."
        )

    boundary = (InputRequiredEvent, HumanResponseEvent, StopEvent)
    never_produced = [
        t for t in consumed - produced if not _is_subclass(t, (*boundary, StepFailedEvent))
    ]
    if never_produced:
        raise WorkflowValidationError(
            f"The following events are consumed but never produced: {_names(never_produced)}"
        )
    never_consumed = [t for t in produced - consumed if not _is_subclass(t, boundary)]
    if never_consumed:
        raise WorkflowValidationError(
            f"The following events are produced but never consumed: {_names(never_consumed)}"
        )
    # As upstream: only the exact base classes mark a workflow as human-in-the-loop.
    return InputRequiredEvent in produced or HumanResponseEvent in consumed


# --- @catch_error handlers ---------------------------------------------------


def _handlers(steps: Mapping[str, StepConfig]) -> dict[str, StepConfig]:
    return {name: cfg for name, cfg in steps.items() if cfg.role == "catch_error"}


def _check_catch_error(steps: Mapping[str, StepConfig]) -> None:
    handlers = _handlers(steps)
    for name, cfg in handlers.items():
        budget = cfg.catch_error_max_recoveries
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
            raise WorkflowValidationError(
                f"@catch_error handler '{name}' has max_recoveries={budget!r}; "
                "must be an integer >= 1."
            )

    errors: list[str] = []
    wildcards = sorted(n for n, c in handlers.items() if c.catch_error_for_steps is None)
    if len(wildcards) > 1:
        errors.append(
            "Only one wildcard @catch_error handler is allowed per workflow, "
            f"found {len(wildcards)}: {', '.join(wildcards)}"
        )
    owner: dict[str, str] = {}
    for name, cfg in handlers.items():
        for target in cfg.catch_error_for_steps or []:
            if target not in steps:
                errors.append(
                    f"@catch_error handler '{name}' lists unknown step '{target}' in for_steps."
                )
            elif target in handlers:
                errors.append(
                    f"@catch_error handler '{name}' cannot cover another handler step '{target}'."
                )
            elif target in owner:
                errors.append(
                    f"Step '{target}' is claimed by two @catch_error handlers: "
                    f"'{owner[target]}' and '{name}'."
                )
            else:
                owner[target] = name
    if errors:
        raise WorkflowValidationError("\n".join(errors))


def catch_error_handler_for(step_name: str, steps: Mapping[str, StepConfig]) -> str | None:
    """Name the ``@catch_error`` handler that receives ``step_name``'s failures.

    A handler listing the step in ``for_steps`` wins over the wildcard handler
    (``for_steps=None``). A handler's own failures are never handled, and an
    unknown step has no handler: both give None.
    """
    cfg = steps.get(step_name)
    if cfg is None or cfg.role == "catch_error":
        return None
    handlers = _handlers(steps)
    for name, handler in handlers.items():
        if handler.catch_error_for_steps is not None and step_name in handler.catch_error_for_steps:
            return name
    for name, handler in handlers.items():
        if handler.catch_error_for_steps is None:
            return name
    return None


# --- graph checks ------------------------------------------------------------


@dataclass
class GraphValidationError:
    """One failed graph check: which check, what failed, how to fix it, which steps."""

    check: WorkflowGraphCheck
    message: str
    hint: str
    step_names: list[str] = field(default_factory=list)

    def format(self) -> str:
        """The two lines this failure contributes to the raised error's message."""
        return f"  - [{self.check}] {self.message}\n    {self.hint}"


def _walk(seeds: Iterable[Any], adjacency: Mapping[Any, list[Any]]) -> set[Any]:
    seen: set[Any] = set()
    pending = list(seeds)
    while pending:
        node = pending.pop()
        if node not in seen:
            seen.add(node)
            pending.extend(adjacency.get(node, []))
    return seen


def graph_errors(
    steps: Mapping[str, StepConfig],
    start_event: type[StartEvent],
    skip_graph_checks: Iterable[str] = (),
) -> list[GraphValidationError]:
    """Run the graph checks and return every failure (an empty list if none).

    The graph has a node per step name and per event class; an event leads to
    the steps accepting it, a step to the events it returns.

    - ``reachability``: each step is reachable from the StartEvent, from
      HumanResponseEvent subclasses, or from a ``@catch_error`` handler.
    - ``terminal_event``: an event no step accepts is a StopEvent or an
      InputRequiredEvent (subclasses included).
    - ``dead_end``: each step returning an event has a path to a StopEvent or an
      InputRequiredEvent.

    A name in ``skip_graph_checks`` skips that check; a step listing
    ``reachability`` or ``dead_end`` in its own ``skip_graph_checks`` is exempt.
    """
    skipped = set(skip_graph_checks)
    forward: dict[Any, list[Any]] = {}
    backward: dict[Any, list[Any]] = {}
    events: set[Any] = set()
    for name, cfg in steps.items():
        for ev in cfg.accepted_events:
            events.add(ev)
            forward.setdefault(ev, []).append(name)
            backward.setdefault(name, []).append(ev)
        for ev in _returned(cfg):
            events.add(ev)
            forward.setdefault(name, []).append(ev)
            backward.setdefault(ev, []).append(name)

    def exempt(check: str) -> set[str]:
        return {n for n, c in steps.items() if check in c.skip_graph_checks}

    errors: list[GraphValidationError] = []
    if "reachability" not in skipped:
        seeds = [start_event, *(e for e in events if _is_subclass(e, HumanResponseEvent))]
        seeds += list(_handlers(steps))
        reached = _walk(seeds, forward)
        lost = sorted(n for n in steps if n not in reached and n not in exempt("reachability"))
        if lost:
            errors.append(
                GraphValidationError(
                    check="reachability",
                    message=f"Unreachable steps: {', '.join(lost)}",
                    hint="Steps must be reachable from StartEvent or HumanResponseEvent.",
                    step_names=lost,
                )
            )
    outputs = (StopEvent, InputRequiredEvent)
    if "terminal_event" not in skipped:
        dangling = [
            e
            for e in events
            if not any(t in steps for t in forward.get(e, [])) and not _is_subclass(e, outputs)
        ]
        if dangling:
            errors.append(
                GraphValidationError(
                    check="terminal_event",
                    message=f"Events produced but never consumed: {_names(dangling)}",
                    hint="Only StopEvent and InputRequiredEvent may be terminal.",
                )
            )
    if "dead_end" not in skipped:
        finishing = _walk([e for e in events if _is_subclass(e, outputs)], backward)
        stuck = sorted(
            n
            for n, cfg in steps.items()
            if _returned(cfg) and n not in finishing and n not in exempt("dead_end")
        )
        if stuck:
            errors.append(
                GraphValidationError(
                    check="dead_end",
                    message=f"Dead-end steps: {', '.join(stuck)}",
                    hint="Steps must have a path to StopEvent or InputRequiredEvent.",
                    step_names=stuck,
                )
            )
    return errors


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
    _check_catch_error(steps)
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
