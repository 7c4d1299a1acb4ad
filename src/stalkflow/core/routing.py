"""Where an event goes: to the steps that accept its exact type, or to waiters.

Upstream routes by exact type (``type(ev) in accepted``), never by
``isinstance``: a subclass of ``A`` is not delivered to a step that accepts
``A``. A waiter that matches an event takes it instead of its step, so the step
is re-run once with the event rather than also receiving it as input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from stalkflow.core.deliveries import Waiter
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


class RoutingTable:
    """Maps event types to the steps that accept them, for one workflow."""

    def __init__(self, accepted: Mapping[str, Iterable[type[Event]]]) -> None:
        self._accepted = {step: frozenset(types) for step, types in accepted.items()}
        by_type: dict[type[Event], list[str]] = {}
        for step, types in self._accepted.items():
            for event_type in types:
                by_type.setdefault(event_type, []).append(step)
        self._by_type = {kind: tuple(steps) for kind, steps in by_type.items()}

    @property
    def steps(self) -> tuple[str, ...]:
        return tuple(self._accepted)

    def accepts(self, step: str, event_type: type[Event]) -> bool:
        return event_type in self._accepted.get(step, ())

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
        candidates = self._by_type.get(type(event), ())
        targets = tuple(
            name for name in candidates if name not in woken and (step is None or name == step)
        )
        return Route(steps=targets, waiters=resolved)


def is_expected_unhandled(event: Event) -> bool:
    """InputRequiredEvents are for humans: nobody accepting them is the normal case."""
    return isinstance(event, InputRequiredEvent)
