"""Where an event goes: to the steps that accept its exact type, or to waiters.

Upstream routes by exact type (``type(ev) in accepted``), never by
``isinstance``: a subclass of ``A`` is not delivered to a step that accepts
``A``. A waiter that matches an event takes it instead of its step, so the step
is re-run once with the event rather than also receiving it as input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from stalkflow.core.deliveries import Waiter
from stalkflow.core.names import qualified_name
from stalkflow.errors import WorkflowRuntimeError
from stalkflow.events import Event, InputRequiredEvent


@dataclasses.dataclass(frozen=True)
class Route:
    """The decision for one event: target steps, resolved waiters, or unhandled."""

    steps: tuple[str, ...]
    waiters: tuple[Waiter, ...]

    @property
    def unhandled(self) -> bool:
        return not self.steps and not self.waiters


def type_key(kind: type[Any]) -> str:
    """The name an event type is routed by: ``module.QualName`` (see ``core.names``)."""
    return qualified_name(kind)


class RoutingTable:
    """Maps event types to the steps that accept them, for one workflow.

    Types are held by qualified name, so a table can also be rebuilt from a run's
    record (``RunRecord.routes``) in a process that never imported the workflow:
    a client that answers a run needs only the class of the event it sends.
    """

    def __init__(self, accepted: Mapping[str, Iterable[type[Event] | str]]) -> None:
        self._accepted = {
            step: frozenset(kind if isinstance(kind, str) else type_key(kind) for kind in types)
            for step, types in accepted.items()
        }
        by_type: dict[str, list[str]] = {}
        for step, names in self._accepted.items():
            for name in names:
                by_type.setdefault(name, []).append(step)
        self._by_type = {name: tuple(steps) for name, steps in by_type.items()}

    @property
    def steps(self) -> tuple[str, ...]:
        return tuple(self._accepted)

    def routes(self) -> dict[str, tuple[str, ...]]:
        """Step name to accepted type names, for storing with a run."""
        return {step: tuple(sorted(names)) for step, names in self._accepted.items()}

    def accepts(self, step: str, event_type: type[Event]) -> bool:
        return type_key(event_type) in self._accepted.get(step, ())

    def check_target(self, event: Event, step: str | None) -> None:
        """Raise upstream's errors for ``send_event(ev, step=...)`` to a wrong step."""
        if step is None:
            return
        if step not in self._accepted:
            raise WorkflowRuntimeError(f"Step {step} does not exist")
        if not self.accepts(step, type(event)):
            raise WorkflowRuntimeError(f"Step {step} does not accept event of type {type(event)}")

    def route(
        self, event: Event, *, step: str | None = None, waiters: Sequence[Waiter] = ()
    ) -> Route:
        """Route one event; ``step`` restricts normal routing to that step."""
        resolved = tuple(waiter for waiter in waiters if waiter.matches(event))
        woken = {waiter.delivery.step for waiter in resolved}
        candidates = self._by_type.get(type_key(type(event)), ())
        targets = tuple(
            name for name in candidates if name not in woken and (step is None or name == step)
        )
        return Route(steps=targets, waiters=resolved)


def is_expected_unhandled(event: Event) -> bool:
    """InputRequiredEvents are for humans: nobody accepting them is the normal case."""
    return isinstance(event, InputRequiredEvent)
