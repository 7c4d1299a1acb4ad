"""LlamaIndex instrumentation: a span per run and per step execution, and their events.

Observability integrations (Arize Phoenix, OpenTelemetry, Langfuse...) attach
handlers to the root dispatcher of ``llama_index_instrumentation``; stalkflow
reports to it as llama-index-workflows does:

- a **run span**, named after the workflow's run method (``MyWorkflow.run-<uuid>``),
  the child of the span active where ``run()`` was called; it exits with the
  run's StopEvent (after a ``WorkflowRunOutputEvent``), exits after a
  ``SpanCancelledEvent`` when the run is cancelled, and is dropped (with a
  ``SpanDropEvent``) when the run fails or times out;
- a **step span** per step execution, named after the step function
  (``MyWorkflow.my_step-<uuid>``), the child of the run span; it exits with what
  the step returned (after a ``WorkflowStepOutputEvent`` when that is an event),
  is dropped when the step raises, and exits after a ``SpanCancelledEvent`` when
  the step is cancelled;
- **instrument tags**: inside a run, ``active_instrument_tags`` holds the
  caller's tags plus ``llamaindex.run_id``; inside a step also
  ``llamaindex.step.input_event`` (the input's class name) and
  ``llamaindex.step.input_summary``. Events and spans carry them.

The run span lives in the process that awaits the run (the handler's task);
step spans in the process that executes the step. In the embedded engine a
step's task inherits the run's context, so its span is the run span's child.
In distributed mode step spans are made by the worker, with the run id and
input tags but neither the caller's tags nor a parent span (they do not cross
the broker).

With no handler attached (only the dispatcher's null handlers), no span is
entered and no event built; the tags are still set, as upstream's are.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import uuid
from collections.abc import Callable, Mapping
from contextvars import Token
from typing import TYPE_CHECKING, Any

from llama_index_instrumentation import get_dispatcher
from llama_index_instrumentation.base import BaseEvent
from llama_index_instrumentation.dispatcher import active_instrument_tags
from llama_index_instrumentation.event_handlers import NullEventHandler
from llama_index_instrumentation.events.span import SpanDropEvent
from llama_index_instrumentation.span import active_span_id
from llama_index_instrumentation.span_handlers import NullSpanHandler

from stalkflow.context.step_scope import WaitingForEvent
from stalkflow.core.runs import RunRecord, RunStatus
from stalkflow.events import Event
from stalkflow.events.summary import summarize_event
from stalkflow.observability.span_events import (
    SpanCancelledEvent,
    WorkflowRunOutputEvent,
    WorkflowStepOutputEvent,
)

if TYPE_CHECKING:
    from stalkflow.core.deliveries import Delivery
    from stalkflow.workflow import Workflow

dispatcher = get_dispatcher(__name__)

RUN_ID_TAG = "llamaindex.run_id"
START_EVENT_TAG = "llamaindex.start_event"
INPUT_EVENT_TAG = "llamaindex.step.input_event"
INPUT_SUMMARY_TAG = "llamaindex.step.input_summary"

Tags = dict[str, Any]


def instrumented() -> bool:
    """Whether any handler other than the null ones would hear a span or an event."""
    current = dispatcher
    while True:
        for span_handler in current.span_handlers:
            if not isinstance(span_handler, NullSpanHandler):
                return True
        for event_handler in current.event_handlers:
            if not isinstance(event_handler, NullEventHandler):
                return True
        if not current.propagate or current.manager is None:
            return False
        current = current.parent


def emit(event: BaseEvent) -> None:
    """Dispatch ``event``; instrumentation never fails a run."""
    with contextlib.suppress(Exception):
        dispatcher.event(event)


class _Span:
    """A span entered by hand: its id made current, and given back on ``close``."""

    __slots__ = ("bound", "id", "instance", "token")

    def __init__(
        self, name: str, bound: inspect.BoundArguments, instance: Any, tags: Tags | None
    ) -> None:
        self.id = f"{name}-{uuid.uuid4()}"
        self.bound = bound
        self.instance = instance
        self.token = active_span_id.set(self.id)
        parent = self.token.old_value
        dispatcher.span_enter(
            id_=self.id,
            bound_args=bound,
            instance=instance,
            parent_id=None if parent is Token.MISSING else parent,
            tags=tags,
        )

    def exit(self, result: Any) -> None:
        dispatcher.span_exit(
            id_=self.id, bound_args=self.bound, instance=self.instance, result=result
        )

    def cancelled(self, reason: str) -> None:
        emit(SpanCancelledEvent(reason=reason))
        self.exit(None)

    def drop(self, error: BaseException) -> None:
        emit(SpanDropEvent(span_id=self.id, err_str=str(error)))
        dispatcher.span_drop(id_=self.id, bound_args=self.bound, instance=self.instance, err=error)

    def close(self) -> None:
        with contextlib.suppress(ValueError):  # reset from another context
            active_span_id.reset(self.token)


def _bind(func: Callable[..., Any], args: Mapping[str, Any]) -> inspect.BoundArguments:
    try:
        return inspect.signature(func).bind(**args)
    except (TypeError, ValueError):
        return inspect.signature(lambda: None).bind()


class RunSpan:
    """A run's tags and span, held by the task that awaits the run (``WorkflowHandler``).

    ``enter()`` before the run starts, so that what it starts in this context
    (the embedded engine's step tasks) inherits both; then ``finished()`` or
    ``failed()``, then ``close()``.
    """

    __slots__ = ("_span", "_tags_token", "_workflow")

    def __init__(self, workflow: Workflow) -> None:
        self._workflow = workflow
        self._span: _Span | None = None
        self._tags_token: Token[Tags] | None = None

    def enter(self, run_id: str, start_event: Event | None) -> None:
        tags = {**active_instrument_tags.get(), RUN_ID_TAG: run_id}
        self._tags_token = active_instrument_tags.set(tags)
        if not instrumented():
            return
        workflow = self._workflow
        span_tags = dict(tags)
        if start_event is not None:
            span_tags[START_EVENT_TAG] = summarize_event(start_event)
        bound = _bind(workflow.run, {"start_event": start_event})
        # upstream enters the run span with the start event among the active tags
        token = active_instrument_tags.set(span_tags)
        try:
            self._span = _Span(f"{type(workflow).__name__}.run", bound, workflow, None)
        finally:
            active_instrument_tags.reset(token)

    def finished(self, record: RunRecord, error: BaseException | None) -> None:
        """The run ended: exit with its StopEvent, or as cancelled, or drop with ``error``."""
        span = self._span
        if span is None:
            return
        if record.status is RunStatus.COMPLETED:
            stop = record.result
            if isinstance(stop, Event):
                emit(WorkflowRunOutputEvent(output=summarize_event(stop)))
            span.exit(stop)
        elif record.status is RunStatus.CANCELLED:
            span.cancelled("workflow cancelled by user")
        else:
            span.drop(error or RuntimeError(f"run {record.run_id} {record.status.value}"))

    def failed(self, error: BaseException) -> None:
        if self._span is not None:
            self._span.drop(error)

    def close(self) -> None:
        if self._span is not None:
            self._span.close()
        if self._tags_token is not None:
            with contextlib.suppress(ValueError):
                active_instrument_tags.reset(self._tags_token)


class StepSpan:
    """One step execution's tags and span, around its body (a context manager).

    The tags are set on entry, before the body's task or thread is made, so
    that the step sees them; ``returned(value)`` records what the step returned.
    """

    __slots__ = ("_args", "_delivery", "_func", "_result", "_span", "_tags_token")

    def __init__(
        self, delivery: Delivery, func: Callable[..., Any], args: Mapping[str, Any]
    ) -> None:
        self._delivery = delivery
        self._func = func
        self._args = args
        self._result: Any = None
        self._span: _Span | None = None
        self._tags_token: Token[Tags] | None = None

    def __enter__(self) -> StepSpan:
        event = self._delivery.event
        tags = {
            **active_instrument_tags.get(),
            RUN_ID_TAG: self._delivery.run_id,
            INPUT_EVENT_TAG: type(event).__name__,
            INPUT_SUMMARY_TAG: summarize_event(event),
        }
        self._tags_token = active_instrument_tags.set(tags)
        if instrumented():
            name = getattr(self._func, "__qualname__", self._delivery.step)
            self._span = _Span(name, _bind(self._func, self._args), None, tags)
        return self

    def returned(self, value: Any) -> None:
        self._result = value
        if self._span is not None and isinstance(value, Event):
            emit(WorkflowStepOutputEvent(output=summarize_event(value)))

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        span = self._span
        try:
            if span is None:
                return
            if error is None:
                span.exit(self._result)
            elif isinstance(error, WaitingForEvent):
                span.exit(None)  # the step resumes later; upstream's span ends cleanly too
            elif isinstance(error, asyncio.CancelledError):
                span.cancelled("step cancelled")
            else:
                span.drop(error)
        finally:
            if span is not None:
                span.close()
            if self._tags_token is not None:
                with contextlib.suppress(ValueError):
                    active_instrument_tags.reset(self._tags_token)
