"""``WorkflowHandler``: the caller's side of one run.

``await handler`` returns the StopEvent's result (the event itself for a
StopEvent subclass) or raises what the run raised: the step's own exception,
``WorkflowTimeoutError`` or ``WorkflowCancelledByUser``. ``stream_events()``
reads the run's event stream from its beginning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any

from stalkflow.context.snapshot import rebuild_exception
from stalkflow.core.runs import RunRecord, RunStatus
from stalkflow.errors import (
    WorkflowCancelledByUser,
    WorkflowRuntimeError,
    WorkflowTimeoutError,
)
from stalkflow.events import (
    Event,
    InternalDispatchEvent,
    StartEvent,
    StopEvent,
    WorkflowCancelledEvent,
)
from stalkflow.observability.instrumentation import RunSpan

if TYPE_CHECKING:
    from stalkflow.context.context import Context
    from stalkflow.engine import Engine


def outcome_of(run: RunRecord) -> Any:
    """The value ``await handler`` returns for a finished run, or raise its error."""
    if run.status is RunStatus.COMPLETED:
        event = run.result
        if type(event) is StopEvent:
            return event.result
        return event
    error = run.error
    if run.status is RunStatus.CANCELLED:
        raise WorkflowCancelledByUser()
    if run.status is RunStatus.TIMED_OUT:
        raise WorkflowTimeoutError(error.message if error else "Operation timed out")
    if error is None:
        raise WorkflowRuntimeError(f"Workflow run {run.run_id!r} failed")
    exception = error.exception
    if exception is None:
        exception = rebuild_exception(error)
    raise exception


def error_of(run: RunRecord) -> BaseException | None:
    """What ``await handler`` raises for a finished run; None if it completed."""
    try:
        outcome_of(run)
    except BaseException as exc:
        return exc
    return None


class WorkflowHandler:
    """The handle ``Workflow.run()`` returns; awaitable for the run's result."""

    def __init__(
        self,
        ctx: Context[Any],
        run_id: str,
        engine: Engine,
        starter: Callable[[], Awaitable[RunRecord]],
        *,
        start_event: StartEvent | None = None,
    ) -> None:
        self._ctx = ctx
        self._start_event = start_event
        self._run_id = run_id
        self._engine = engine
        self._record: RunRecord | None = None
        self._stream_consumed = False
        self._started: asyncio.Future[RunRecord] = asyncio.get_running_loop().create_future()
        self._task = asyncio.ensure_future(self._drive(starter))

    async def _drive(self, starter: Callable[[], Awaitable[RunRecord]]) -> RunRecord:
        # The run's span and tags are set in this task before the run starts, so
        # that the embedded engine's step tasks, started from here, inherit them.
        span = RunSpan(self._ctx._workflow)
        span.enter(self._run_id, self._start_event)
        try:
            finished = await self._start_and_wait(starter)
        except BaseException as error:
            span.failed(error)
            raise
        else:
            span.finished(finished, error_of(finished))
        finally:
            span.close()
        return finished

    async def _start_and_wait(self, starter: Callable[[], Awaitable[RunRecord]]) -> RunRecord:
        try:
            record = await starter()
        except BaseException as exc:
            if not self._started.done():
                self._started.set_exception(exc)
                self._started.exception()  # the task's own result reports it
            raise
        self._started.set_result(record)
        try:
            finished = await self._engine.wait(self._run_id)
        except asyncio.CancelledError:
            await self._engine.cancel(self._run_id)
            raise
        assert finished is not None
        self._record = finished
        return finished

    # --- awaiting -----------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, Any]:
        return self._result().__await__()

    async def _result(self) -> Any:
        record = await asyncio.shield(self._task)
        return outcome_of(record)

    @property
    def ctx(self) -> Context[Any]:
        return self._ctx

    @property
    def run_id(self) -> str:
        return self._run_id

    def is_done(self) -> bool:
        return self._task.done()

    def done(self) -> bool:
        """Deprecated alias of ``is_done()``."""
        return self.is_done()

    def exception(self) -> BaseException | None:
        if not self._task.done() or self._task.cancelled():
            return None
        if self._task.exception() is not None:
            return self._task.exception()
        return error_of(self._task.result())

    def cancelled(self) -> bool:
        record = self._record
        return record is not None and record.status is RunStatus.CANCELLED

    def get_stop_event(self) -> StopEvent | None:
        """The run's StopEvent once completed; ``WorkflowCancelledEvent()`` if cancelled."""
        record = self._record
        if record is None:
            return None
        if record.status is RunStatus.COMPLETED and isinstance(record.result, StopEvent):
            return record.result
        if record.status is RunStatus.CANCELLED:
            return WorkflowCancelledEvent()
        return None

    async def stop_event_result(self) -> StopEvent:
        await asyncio.shield(self._task)
        event = self.get_stop_event()
        if event is None:
            await self
            raise WorkflowRuntimeError("The run finished without a StopEvent")
        return event

    # --- interacting --------------------------------------------------------------

    async def send_event(self, ev: Event, step: str | None = None) -> None:
        """Send an event into the run (for example a ``HumanResponseEvent``)."""
        self._ctx._workflow._plan().routing.check_target(ev, step)
        await self._started
        await self._engine.send_event(self._run_id, ev, step)

    def _send_later(self, ev: Event, step: str | None) -> None:
        spawn(self.send_event(ev, step))

    async def cancel_run(self, *, timeout: float = 5.0) -> None:
        """Cancel the run; ``await handler`` then raises ``WorkflowCancelledByUser``."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._cancel(), timeout)

    async def _cancel(self) -> None:
        await self._started
        await self._engine.cancel(self._run_id)
        with contextlib.suppress(BaseException):
            await asyncio.shield(self._task)

    def cancel(self) -> None:
        """Deprecated hard cancel: schedule ``cancel_run()``."""
        spawn(self.cancel_run())

    async def stream_events(self, expose_internal: bool = False) -> AsyncGenerator[Event, None]:
        """Yield the run's published events in order, ending after its StopEvent.

        One consumption per handler; several readers can each use
        ``stalkflow.get_run(run_id).events()`` instead.
        """
        if self._stream_consumed:
            raise WorkflowRuntimeError("All the streamed events have already been consumed.")
        self._stream_consumed = True
        await self._started
        after = -1
        while True:
            entries = await self._engine.store.read_stream(self._run_id, after, 1.0)
            if not entries:
                run = await self._engine.store.get_run(self._run_id)
                if run is None or run.finished:
                    entries = await self._engine.store.read_stream(self._run_id, after, 0)
                    if not entries:
                        return
                else:
                    await self._engine.wait(self._run_id, 0)
                    continue
            for entry in entries:
                after = entry.sequence
                event = entry.event
                if isinstance(event, InternalDispatchEvent) and not expose_internal:
                    continue
                yield event
                if isinstance(event, StopEvent):
                    return

    def __str__(self) -> str:
        result = None
        if self._record is not None and self._record.status is RunStatus.COMPLETED:
            with contextlib.suppress(Exception):
                result = outcome_of(self._record)
        return (
            f"WorkflowHandler(workflow={self._ctx._workflow.workflow_name}, "
            f"run_id={self._run_id}, result={result})"
        )


_background: set[asyncio.Future[Any]] = set()


def spawn(awaitable: Awaitable[Any]) -> None:
    """Run fire-and-forget work (``ctx.send_event`` from handler code), logging failures."""
    task = asyncio.ensure_future(awaitable)
    _background.add(task)
    task.add_done_callback(_finished)


def _finished(task: asyncio.Future[Any]) -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logging.getLogger("stalkflow").warning("send_event failed: %r", task.exception())
