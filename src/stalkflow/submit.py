"""The synchronous entry: ``wf.submit(...)`` and ``stalkflow.get_run(run_id)``.

For callers with no event loop (Flask, Django, scripts, Celery tasks). A
``RunHandle`` names a run by id; any process that reaches the same store can
make one with ``get_run`` and wait for, stream, answer or cancel the run. On
the embedded engine the runs execute on one background event loop thread.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from stalkflow.events import Event, InternalDispatchEvent, StopEvent
from stalkflow.handler import outcome_of

if TYPE_CHECKING:
    from stalkflow.engine import Engine
    from stalkflow.events import StartEvent
    from stalkflow.workflow import Workflow

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_loop_pid: int | None = None
_loop_lock = threading.Lock()


def background_loop() -> asyncio.AbstractEventLoop:
    """The event loop thread that runs submitted work in this process (started once).

    A forked child (a prefork worker, a gunicorn worker) gets its own: the
    parent's thread does not exist in the child.
    """
    global _loop, _loop_pid
    with _loop_lock:
        if _loop is None or _loop.is_closed() or _loop_pid != os.getpid():
            _loop_pid = os.getpid()
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="stalkflow-loop", daemon=True)
            thread.start()
            _loop = loop
        return _loop


def _call(factory: Callable[[], Awaitable[T]], timeout_s: float | None = None) -> T:
    async def run() -> T:
        return await factory()

    future = asyncio.run_coroutine_threadsafe(run(), background_loop())
    return future.result(timeout_s)


class RunHandle:
    """A run named by its id, usable from synchronous code in any process."""

    def __init__(self, engine: Engine, run_id: str) -> None:
        self._engine = engine
        self.run_id = run_id

    @property
    def status(self) -> str:
        """``running``, ``completed``, ``failed``, ``cancelled`` or ``timed_out``."""
        return _call(lambda: self._engine.get_run(self.run_id)).status.value

    def get(self, timeout: float | None = None) -> Any:
        """Wait for the result; raises the run's error, or ``TimeoutError`` after ``timeout``."""
        record = _call(lambda: self._engine.wait(self.run_id, timeout))
        if record is None:
            raise TimeoutError(f"Workflow run {self.run_id!r} still running after {timeout} s")
        return outcome_of(record)

    def send_event(self, ev: Event, step: str | None = None) -> None:
        """Send an event into the run (for example a human's response)."""
        _call(lambda: self._engine.send_event(self.run_id, ev, step))

    def cancel(self) -> bool:
        """Cancel the run; False if it had already finished."""
        return _call(lambda: self._engine.cancel(self.run_id))

    def events(
        self, after: int = -1, *, expose_internal: bool = False, poll_s: float = 1.0
    ) -> Iterator[Event]:
        """The run's published events from sequence ``after`` on, ending after its StopEvent.

        Each call reads independently, so several readers can follow one run.
        """
        cursor = after
        while True:
            entries = _call(
                functools.partial(self._engine.store.read_stream, self.run_id, cursor, poll_s)
            )
            if not entries:
                run = _call(lambda: self._engine.wait(self.run_id, 0))
                if run is not None:
                    tail = _call(
                        functools.partial(self._engine.store.read_stream, self.run_id, cursor, 0)
                    )
                    if not tail:
                        return
                    entries = tail
                else:
                    continue
            for entry in entries:
                cursor = entry.sequence
                if isinstance(entry.event, InternalDispatchEvent) and not expose_internal:
                    continue
                yield entry.event
                if isinstance(entry.event, StopEvent):
                    return

    def __repr__(self) -> str:
        return f"RunHandle(run_id={self.run_id!r})"


def submit_run(
    workflow: Workflow, start_event: StartEvent | None, kwargs: dict[str, Any]
) -> RunHandle:
    async def start() -> str:
        handler = workflow.run(start_event=start_event, **kwargs)
        await handler._started
        return handler.run_id

    run_id = _call(start)
    return RunHandle(workflow.engine, run_id)


def get_run(run_id: str, engine: Engine | None = None) -> RunHandle:
    """Reattach to a run by id, from any process that reaches its store."""
    from stalkflow.engine import get_engine

    engine = engine or get_engine()
    _call(lambda: engine.get_run(run_id))  # raises RunNotFoundError for an unknown id
    return RunHandle(engine, run_id)
