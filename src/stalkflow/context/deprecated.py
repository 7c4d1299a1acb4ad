"""The deprecated members of ``Context``, kept because upstream code still uses them.

``Context.get_result()``, ``Context.streaming_queue`` and reading
``Context.is_running`` inside a step work as in llama-index-workflows 2.26, and
warn as it does: a ``DeprecationWarning`` with upstream's text, once per process
and not once per call site, so a loop calling them does not flood the log.
"""

from __future__ import annotations

import asyncio
import warnings
from typing import TYPE_CHECKING, Any

from stalkflow.errors import WorkflowRuntimeError
from stalkflow.events import Event, StopEvent

if TYPE_CHECKING:
    from stalkflow.handler import WorkflowHandler

GET_RESULT = (
    "Context.get_result() is deprecated and will be removed in a future release. "
    "Prefer awaiting the WorkflowHandler returned by Workflow.run: "
    "`result = await workflow.run(..., ctx=ctx)`."
)
STREAMING_QUEUE = (
    "Context.streaming_queue is deprecated and will be removed in a future release. "
    "Prefer iterating Context.stream_events(): `async for ev in ctx.stream_events(): ...`"
)
IS_RUNNING_IN_STEP = (
    "is_running called from within a step; the workflow is always running inside a "
    "step. This usage is deprecated."
)

# The messages already shown by this process.
_shown: set[str] = set()

# Pump tasks of streaming queues, kept alive until they end.
_pumps: set[asyncio.Task[None]] = set()


def warn_once(message: str, stacklevel: int) -> None:
    """Warn ``DeprecationWarning(message)`` the first time only, in this process.

    ``stacklevel`` counts from the caller of this function, as for
    ``warnings.warn``. A warning turned into an error by a filter is raised
    again on the next call, since it was never shown.
    """
    if message in _shown:
        return
    warnings.warn(message, DeprecationWarning, stacklevel=stacklevel + 1)
    _shown.add(message)


def run_result(handler: WorkflowHandler) -> Any:
    """What ``Context.get_result()`` returns for the run of ``handler``.

    The StopEvent's result (the event itself for a StopEvent subclass), or the
    run's error raised, as ``await handler`` would; ``WorkflowRuntimeError``
    while the run is not over.
    """
    from stalkflow.handler import outcome_of

    task = handler._task
    if not task.done():
        raise WorkflowRuntimeError(f"Workflow run with run_id {handler.run_id} is not complete")
    if task.cancelled():
        raise asyncio.CancelledError()
    error = task.exception()
    if error is not None:
        raise error
    return outcome_of(task.result())


def streaming_queue(handler: WorkflowHandler) -> asyncio.Queue[Event]:
    """A queue that a background task fills from the run's event stream.

    Internal events included, as upstream's context stream carries them; the
    task ends after the StopEvent. It consumes the handler's one stream, so
    ``handler.stream_events()`` cannot be used as well.
    """
    queue: asyncio.Queue[Event] = asyncio.Queue()

    async def pump() -> None:
        async for event in handler.stream_events(expose_internal=True):
            await queue.put(event)
            if isinstance(event, StopEvent):
                break

    task = handler._task.get_loop().create_task(pump())
    _pumps.add(task)
    task.add_done_callback(_pumps.discard)
    return queue
