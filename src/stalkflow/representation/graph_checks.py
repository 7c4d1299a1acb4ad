"""The graph checks of a workflow: reachability, terminal events, dead ends.

The graph has a node per step name and per event class; an event leads to the
steps accepting it, a step to the events it returns. Each check can be skipped
by name for a whole workflow (``skip_graph_checks``), and ``reachability`` and
``dead_end`` for one step; every failure is reported, not only the first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

from stalkflow.decorators import StepConfig, WorkflowGraphCheck
from stalkflow.errors import WorkflowValidationError
from stalkflow.events import HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent
from stalkflow.representation._step_types import is_subclass, returned, type_names
from stalkflow.representation.catch_error import catch_error_handlers

__all__ = ["GRAPH_CHECKS", "GraphValidationError", "graph_errors", "unknown_graph_checks"]

#: The names accepted by ``skip_graph_checks``.
GRAPH_CHECKS: frozenset[str] = frozenset(get_args(WorkflowGraphCheck))


def unknown_graph_checks(names: Iterable[str]) -> None:
    """Raise ``WorkflowValidationError`` if ``names`` holds anything but a graph check name."""
    unknown = set(names) - GRAPH_CHECKS
    if unknown:
        raise WorkflowValidationError(
            f"Unknown graph check names: {', '.join(sorted(unknown))}. "
            f"Valid names are: {', '.join(sorted(GRAPH_CHECKS))}"
        )


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
        for ev in returned(cfg):
            events.add(ev)
            forward.setdefault(name, []).append(ev)
            backward.setdefault(ev, []).append(name)

    def exempt(check: str) -> set[str]:
        return {n for n, c in steps.items() if check in c.skip_graph_checks}

    errors: list[GraphValidationError] = []
    if "reachability" not in skipped:
        seeds = [start_event, *(e for e in events if is_subclass(e, HumanResponseEvent))]
        seeds += list(catch_error_handlers(steps))
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
            if not any(t in steps for t in forward.get(e, [])) and not is_subclass(e, outputs)
        ]
        if dangling:
            errors.append(
                GraphValidationError(
                    check="terminal_event",
                    message=f"Events produced but never consumed: {type_names(dangling)}",
                    hint="Only StopEvent and InputRequiredEvent may be terminal.",
                )
            )
    if "dead_end" not in skipped:
        finishing = _walk([e for e in events if is_subclass(e, outputs)], backward)
        stuck = sorted(
            n
            for n, cfg in steps.items()
            if returned(cfg) and n not in finishing and n not in exempt("dead_end")
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
