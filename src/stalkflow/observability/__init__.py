"""What a workflow tells the outside while it runs.

- :mod:`~stalkflow.observability.verbose`: the lines of ``Workflow(verbose=True)``;
- :mod:`~stalkflow.observability.instrumentation`: spans, events and instrument
  tags on LlamaIndex's instrumentation dispatcher (Arize Phoenix, OpenTelemetry),
  with the events of :mod:`~stalkflow.observability.span_events`.
"""

from stalkflow.observability.span_events import (
    SpanCancelledEvent,
    WorkflowRunOutputEvent,
    WorkflowStepOutputEvent,
)

__all__ = ["SpanCancelledEvent", "WorkflowRunOutputEvent", "WorkflowStepOutputEvent"]
