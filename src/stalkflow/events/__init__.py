"""Events: the typed messages that steps consume and produce.

Drop-in compatible with ``workflows.events`` of llama-index-workflows. An event is
a pydantic model whose declared fields are validated, and which also carries any
undeclared keyword arguments as dynamic keys, reachable as attributes
(``ev.topic``) or as mapping items (``ev["topic"]``).

The module also provides the codec that stalkflow's transport uses to move an
event between processes: :func:`event_to_payload` and :func:`event_from_payload`.

The event classes of a run are defined here. The dict-like base model and
:class:`Event` live in ``_base``, the ``Serializable*`` field types in
``_fields`` and the wire codec in ``_payload``; all are imported from here.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import Field, PrivateAttr

from stalkflow.context.serializers import register_framework_type
from stalkflow.events._base import DictLikeModel, Event
from stalkflow.events._fields import (
    SerializableEvent,
    SerializableEventType,
    SerializableException,
    SerializableOptionalEvent,
    SerializableOptionalException,
    UnreconstructedException,
)
from stalkflow.events._fields import _exception_from_json as _exception_from_json
from stalkflow.events._payload import event_from_payload, event_to_payload

__all__ = [
    "DictLikeModel",
    "Event",
    "EventType",
    "HumanResponseEvent",
    "IdleReleasedEvent",
    "InputRequiredEvent",
    "InternalDispatchEvent",
    "SerializableEvent",
    "SerializableEventType",
    "SerializableException",
    "SerializableOptionalEvent",
    "SerializableOptionalException",
    "StartEvent",
    "StepFailedEvent",
    "StepState",
    "StepStateChanged",
    "StopEvent",
    "UnhandledEvent",
    "UnreconstructedException",
    "WorkflowCancelledEvent",
    "WorkflowFailedEvent",
    "WorkflowIdleEvent",
    "WorkflowTimedOutEvent",
    "event_from_payload",
    "event_to_payload",
]


class StartEvent(Event):
    """The event a run starts with; ``Workflow.run(**kwargs)`` puts kwargs on it."""


class StopEvent(Event):
    """The event that ends a run; its ``result`` is what the run returns.

    ``StopEvent(result=value)`` keeps ``value`` in a private attribute. A run
    that ends with a subclass of StopEvent returns the event itself, so
    subclasses may declare fields, or override :meth:`_get_result`.
    """

    _result: Any = PrivateAttr(default=None)

    def __init__(self, result: Any = None, **kwargs: Any) -> None:
        super().__init__(_result=result, **kwargs)

    def _get_result(self) -> Any:
        """Return the run's result; override to derive it from the fields."""
        return self._result

    @property
    def result(self) -> Any:
        """The value the run returns (see :meth:`_get_result`)."""
        return self._get_result()

    def _dump_extras(self) -> dict[str, Any]:
        extras = super()._dump_extras()
        if self._result is not None:
            extras["result"] = self._result
        return extras

    def __repr__(self) -> str:
        shown = dict(self._data)
        shown.update((name, getattr(self, name)) for name in type(self).model_fields)
        if self._result is not None:
            shown["result"] = self._result
        arguments = ", ".join(f"{key}={value!r}" for key, value in shown.items())
        return f"{type(self).__name__}({arguments})"

    def __str__(self) -> str:
        return str(self._result)


class WorkflowTimedOutEvent(StopEvent):
    """Streamed when a run exceeds its timeout, before ``WorkflowTimeoutError``."""

    timeout: float = Field(description="The timeout, in seconds, that was exceeded.")
    active_steps: list[str] = Field(description="Steps still running at that moment.")


class WorkflowCancelledEvent(StopEvent):
    """Streamed when a run is cancelled, before ``WorkflowCancelledByUser``."""


class IdleReleasedEvent(StopEvent):
    """Returned (not streamed) when a server releases an idle run."""


class WorkflowFailedEvent(StopEvent):
    """Streamed when a step fails for good (retries exhausted, or no handler)."""

    step_name: str = Field(description="The step that failed.")
    exception: SerializableException = Field(description="What it raised.")
    attempts: int | None = Field(default=None, description="Attempts made, if a step failed.")
    elapsed_seconds: float | None = Field(
        default=None, description="Seconds from the first attempt to the final failure."
    )


class StepFailedEvent(Event):
    """Given to a ``@catch_error`` handler when a step has exhausted its retries.

    The handler may return a StopEvent to end the run successfully, another
    event to go on, or raise to fail the run.
    """

    step_name: str = Field(description="The step that failed.")
    input_event: SerializableEvent = Field(description="The event the step was given.")
    exception: SerializableException = Field(description="What the last attempt raised.")
    attempts: int = Field(description="Attempts made in total.")
    elapsed_seconds: float = Field(description="Seconds from the first attempt to the last.")
    failed_at: datetime = Field(description="When the last attempt failed (aware, UTC).")


class InputRequiredEvent(Event):
    """A step asks a human for input; the caller answers with a HumanResponseEvent.

    It is written to the event stream and need not be consumed by any step.
    """


class HumanResponseEvent(Event):
    """A human's answer to an :class:`InputRequiredEvent`, sent by the caller."""


class InternalDispatchEvent(Event):
    """Base of the events that describe the engine's own activity.

    They are streamed only to readers that ask for them
    (``stream_events(expose_internal=True)``).
    """


class WorkflowIdleEvent(InternalDispatchEvent):
    """The run waits on outside input only: nothing is queued or running."""


class UnhandledEvent(InternalDispatchEvent):
    """An event arrived that no step and no waiter accepts; it was dropped."""

    event_type: str = Field(description="Class name of the dropped event.")
    qualified_name: str = Field(description="Module and class name of the dropped event.")
    step_name: str | None = Field(default=None, description="The step it was addressed to.")
    idle: bool = Field(description="Whether the run is idle afterwards.")


class StepState(Enum):
    """Where one execution of a step stands."""

    PREPARING = "preparing"  # queued, waiting for a free worker slot
    RUNNING = "running"
    NOT_RUNNING = "not_running"


class StepStateChanged(InternalDispatchEvent):
    """A step execution was queued, started or finished."""

    name: str = Field(description="The step's name.")
    step_state: StepState = Field(description="Its new state.")
    worker_id: str = Field(description="The worker slot it runs on.")
    input_event_name: str = Field(description="The name of the event it was given.")
    output_event_name: str | None = Field(default=None, description="The event it produced.")


#: The type of an event class, as used in step signatures and routing tables.
EventType = type[Event]


for _event_cls in (
    Event,
    StartEvent,
    StopEvent,
    WorkflowTimedOutEvent,
    WorkflowCancelledEvent,
    IdleReleasedEvent,
    WorkflowFailedEvent,
    StepFailedEvent,
    InputRequiredEvent,
    HumanResponseEvent,
    InternalDispatchEvent,
    WorkflowIdleEvent,
    UnhandledEvent,
    StepStateChanged,
):
    register_framework_type(_event_cls)
