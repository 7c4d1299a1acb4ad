"""Deliveries: one event handed to one step of one run."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

from stalkflow.events import Event


@dataclasses.dataclass(frozen=True)
class ErrorInfo:
    """A step's exception in a form that can cross processes.

    ``exception`` holds the original object while it stays in one process (the
    embedded engine), so ``await handler`` re-raises the step's own exception;
    across processes it is rebuilt from ``type_name`` and ``message``.
    """

    type_name: str
    message: str
    step: str | None = None
    traceback: str | None = None
    exception: BaseException | None = dataclasses.field(default=None, compare=False)

    @classmethod
    def from_exception(
        cls, exc: BaseException, *, step: str | None = None, traceback: str | None = None
    ) -> ErrorInfo:
        kind = type(exc)
        return cls(
            type_name=f"{kind.__module__}.{kind.__qualname__}",
            message=str(exc),
            step=step,
            traceback=traceback,
            exception=exc,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "type_name": self.type_name,
            "message": self.message,
            "step": self.step,
            "traceback": self.traceback,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ErrorInfo:
        return cls(
            type_name=str(data["type_name"]),
            message=str(data["message"]),
            step=data.get("step"),
            traceback=data.get("traceback"),
        )


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One event handed to one step of one run.

    ``resolved`` carries the events that resolved this step's ``wait_for_event``
    calls so far (``None`` marks a waiter that timed out): the step re-runs from
    the top and each call returns its event. ``attempt`` counts executions of
    this delivery by the retry policy, starting at 1.
    """

    run_id: str
    workflow: str
    step: str
    event: Event
    delivery_id: str
    attempt: int = 1
    first_attempt_at: float | None = None
    last_error: ErrorInfo | None = None
    last_failed_at: float | None = None
    resolved: Mapping[str, Event | None] = dataclasses.field(default_factory=dict)
    expires_waiter: str | None = None
    # per @catch_error handler, how often it has recovered this lineage of events
    recoveries: Mapping[str, int] = dataclasses.field(default_factory=dict)

    @property
    def lineage_id(self) -> str:
        """The id shared by every attempt of this delivery (retries add ``~N``)."""
        return self.delivery_id.split("~")[0]

    def retried(self, error: ErrorInfo, now: float) -> Delivery:
        """The same delivery, one attempt later, remembering why the last one failed."""
        return dataclasses.replace(
            self,
            delivery_id=f"{self.lineage_id}~{self.attempt + 1}",
            attempt=self.attempt + 1,
            first_attempt_at=self.first_attempt_at or now,
            last_error=error,
            last_failed_at=now,
        )


@dataclasses.dataclass(frozen=True)
class Waiter:
    """A step suspended in ``ctx.wait_for_event`` until a matching event arrives."""

    waiter_id: str
    event_type: type[Event]
    requirements: Mapping[str, Any]
    delivery: Delivery
    timeout_s: float | None = None
    waiter_event: Event | None = None  # the prompt published when it was registered

    def matches(self, event: Event) -> bool:
        """Exact type, and every requirement equal to the event's attribute."""
        if type(event) is not self.event_type:
            return False
        return all(getattr(event, key, None) == value for key, value in self.requirements.items())

    def timeout_redelivery(self) -> Delivery:
        """The step's re-run once this waiter has timed out: its ``resolved`` entry is None."""
        return dataclasses.replace(
            self.delivery,
            delivery_id=f"{self.delivery.delivery_id}:timeout:{self.waiter_id}",
            resolved={**self.delivery.resolved, self.waiter_id: None},
        )


def now_s() -> float:
    return time.time()
