"""The graph checks of a workflow: reachability, terminal events, dead ends.

:func:`build_step_graph` makes the graph: a node per step name and per event
class; an event leads to the steps accepting it, a step to the events it
returns. :func:`validate_graph` runs the checks on it. Each check can be skipped
by name for a whole workflow (``skip_graph_checks``), and ``reachability`` and
``dead_end`` for one step; every failure is reported, not only the first.

``build_step_graph``, ``validate_graph``, ``StepGraph`` and
``GraphValidationError`` have llama-index-workflows' names and signatures
(``workflows.representation.validate``); :func:`graph_errors` is what
``Workflow.validate`` calls, finding the ``@catch_error`` handlers itself.
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

__all__ = [
    "GRAPH_CHECKS",
    "GraphNode",
    "GraphValidationError",
    "StepGraph",
    "build_step_graph",
    "graph_errors",
    "unknown_graph_checks",
    "validate_graph",
]

#: A node of a step graph: a step's name or an event class.
GraphNode = str | type
_OUTPUTS = (StopEvent, InputRequiredEvent)

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


@dataclass
class StepGraph:
    """A workflow's steps and events as adjacency lists, with what each end reaches.

    ``outgoing`` maps an event class to the names of the steps accepting it, and
    a step name to the event classes it returns (``None`` left out).
    """

    outgoing: dict[GraphNode, list[GraphNode]] = field(default_factory=dict)
    event_types: set[type] = field(default_factory=set)
    step_names: set[str] = field(default_factory=set)
    #: Nodes reachable from the StartEvent, HumanResponseEvent subclasses and
    #: ``@catch_error`` handlers.
    forward_reachable: set[GraphNode] = field(default_factory=set)
    #: Nodes from which a StopEvent or an InputRequiredEvent can be reached.
    reverse_reachable: set[GraphNode] = field(default_factory=set)


def _walk(seeds: Iterable[Any], adjacency: Mapping[Any, list[Any]]) -> set[Any]:
    seen: set[Any] = set()
    pending = list(seeds)
    while pending:
        node = pending.pop()
        if node not in seen:
            seen.add(node)
            pending.extend(adjacency.get(node, []))
    return seen


def build_step_graph(
    steps: Mapping[str, StepConfig],
    start_event_class: type,
    catch_error_steps: list[str] | None = None,
) -> StepGraph:
    """The graph of ``steps``, with its forward and reverse reachability.

    Forward reachability starts at ``start_event_class``, at every
    HumanResponseEvent subclass in the graph (a human may send one at any time)
    and at the ``catch_error_steps`` (reached by a step's failure, not an event).
    Reverse reachability starts at every StopEvent and InputRequiredEvent.
    """
    outgoing: dict[GraphNode, list[GraphNode]] = {}
    events: set[type] = set()
    for name, cfg in steps.items():
        for ev in cfg.accepted_events:
            events.add(ev)
            outgoing.setdefault(ev, []).append(name)
        for ev in returned(cfg):
            events.add(ev)
            outgoing.setdefault(name, []).append(ev)
    incoming: dict[GraphNode, list[GraphNode]] = {}
    for source, targets in outgoing.items():
        for target in targets:
            incoming.setdefault(target, []).append(source)
    seeds: list[GraphNode] = [start_event_class]
    seeds += [e for e in events if is_subclass(e, HumanResponseEvent)]
    seeds += catch_error_steps or []
    return StepGraph(
        outgoing=outgoing,
        event_types=events,
        step_names=set(steps),
        forward_reachable=_walk(seeds, outgoing),
        reverse_reachable=_walk([e for e in events if is_subclass(e, _OUTPUTS)], incoming),
    )


def validate_graph(
    steps: Mapping[str, StepConfig],
    start_event_class: type,
    skip_checks: Iterable[str] | None = None,
    catch_error_steps: list[str] | None = None,
) -> list[GraphValidationError]:
    """Run the graph checks and return every failure (an empty list if none).

    - ``reachability``: each step is forward-reachable (see :func:`build_step_graph`).
    - ``terminal_event``: an event no step accepts is a StopEvent or an
      InputRequiredEvent (subclasses included).
    - ``dead_end``: each step returning an event has a path to a StopEvent or an
      InputRequiredEvent.

    A name in ``skip_checks`` skips that check; a step listing ``reachability``
    or ``dead_end`` in its own ``skip_graph_checks`` is exempt. ``@catch_error``
    handlers are reachable only if named in ``catch_error_steps``.
    """
    skipped = set(skip_checks or ())
    graph = build_step_graph(steps, start_event_class, catch_error_steps)

    def exempt(check: str) -> set[str]:
        return {n for n, c in steps.items() if check in c.skip_graph_checks}

    errors: list[GraphValidationError] = []
    if "reachability" not in skipped:
        lost = sorted(graph.step_names - graph.forward_reachable - exempt("reachability"))
        if lost:
            errors.append(
                GraphValidationError(
                    check="reachability",
                    message=f"Unreachable steps: {', '.join(lost)}",
                    hint="Steps must be reachable from StartEvent or HumanResponseEvent.",
                    step_names=lost,
                )
            )
    if "terminal_event" not in skipped:
        dangling = [
            e
            for e in graph.event_types
            if not graph.outgoing.get(e) and not is_subclass(e, _OUTPUTS)
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
        producing = {n for n in graph.step_names if graph.outgoing.get(n)}
        stuck = sorted(producing - graph.reverse_reachable - exempt("dead_end"))
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


def graph_errors(
    steps: Mapping[str, StepConfig],
    start_event: type[StartEvent],
    skip_graph_checks: Iterable[str] = (),
) -> list[GraphValidationError]:
    """:func:`validate_graph`, with the ``@catch_error`` handlers found among ``steps``."""
    return validate_graph(
        steps, start_event, skip_graph_checks, catch_error_steps=list(catch_error_handlers(steps))
    )
