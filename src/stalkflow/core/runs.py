"""Run records and the decisions about a run's status."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping

from stalkflow.core.deliveries import ErrorInfo
from stalkflow.events import Event


class RunStatus(str, enum.Enum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def finished(self) -> bool:
        return self is not RunStatus.RUNNING


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """What the store keeps about one run, readable from any process by its id."""

    run_id: str
    workflow: str
    status: RunStatus = RunStatus.RUNNING
    created_at: float = 0.0
    updated_at: float = 0.0
    deadline: float | None = None
    timeout_s: float | None = None
    result: Event | None = None
    error: ErrorInfo | None = None
    hitl: bool = False
    routes: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status.finished


@dataclasses.dataclass(frozen=True)
class RunOutcome:
    """How a run ends: its status, its StopEvent (completed) or its error."""

    status: RunStatus
    result: Event | None = None
    error: ErrorInfo | None = None
    terminal_event: Event | None = None


def is_past_deadline(run: RunRecord, now: float) -> bool:
    return run.deadline is not None and now >= run.deadline


def is_stalled(*, in_flight: int, waiters: int, hitl: bool) -> bool:
    """Whether a run that is still running can never finish by itself.

    A run with nothing in flight (running, queued or scheduled for retry) and no
    step waiting in ``wait_for_event`` has nothing left that can produce a
    StopEvent. A workflow that takes human input (it returns InputRequiredEvent
    or accepts HumanResponseEvent) is waiting for that input instead; only its
    timeout ends it.
    """
    return in_flight == 0 and waiters == 0 and not hitl


def timeout_message(timeout_s: float | None, active_steps: Iterable[str]) -> str:
    steps = sorted(set(active_steps))
    active = f"Currently active steps: {', '.join(steps)}" if steps else "No steps active"
    return f"Operation timed out after {timeout_s} seconds. {active}"


def stalled_message(run_id: str, workflow: str) -> str:
    return (
        f"Workflow run {run_id!r} of {workflow!r} stalled: no step is running, queued or "
        "waiting for an event, and no StopEvent was produced. Check that every event a "
        "step returns is accepted by some step (routing is by exact event type)."
    )
