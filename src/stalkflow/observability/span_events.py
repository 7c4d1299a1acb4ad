"""The instrumentation events stalkflow dispatches, besides the spans themselves.

Same class names, fields and ``class_name()`` as llama-index-workflows', so an
event handler written for upstream's recognises them.
"""

from __future__ import annotations

from llama_index_instrumentation.base import BaseEvent


class SpanCancelledEvent(BaseEvent):
    """A span ended by a cancellation: a step cancelled, a run cancelled by its user."""

    reason: str

    @classmethod
    def class_name(cls) -> str:
        return "SpanCancelledEvent"


class WorkflowStepOutputEvent(BaseEvent):
    """A step returned an event; ``output`` summarizes it (inside the step's span)."""

    output: str

    @classmethod
    def class_name(cls) -> str:
        return "step.output"


class WorkflowRunOutputEvent(BaseEvent):
    """A run completed; ``output`` summarizes its StopEvent (inside the run's span)."""

    output: str

    @classmethod
    def class_name(cls) -> str:
        return "workflow.output"
