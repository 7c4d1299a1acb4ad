"""``Context``: a run's state and its channel to the engine, in three phases.

Before ``run()`` a context is a staging area: writes to ``ctx.store`` seed the
next run. Once a run starts, handler code holds the *external* face
(``send_event``, ``to_dict``, ``store``) and each step execution gets an
*internal* face bound to its delivery (``send_event``, ``collect_events``,
``wait_for_event``, ``write_event_to_stream``). Calling a method in the wrong
phase raises ``ContextStateError``, as upstream does.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from stalkflow.context import deprecated
from stalkflow.context import snapshot as snapshots
from stalkflow.context.serializers import BaseSerializer, JsonSerializer
from stalkflow.context.state_codec import StateCodec
from stalkflow.context.state_store import InMemoryStateStore, StateStore
from stalkflow.context.step_scope import StepScope, WaitingForEvent, current_context
from stalkflow.core.deliveries import Waiter
from stalkflow.core.runs import RunRecord
from stalkflow.errors import ContextStateError, WorkflowRuntimeError
from stalkflow.events import Event
from stalkflow.retry_policy import RetryInfo

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from stalkflow.engine import Engine
    from stalkflow.handler import WorkflowHandler
    from stalkflow.workflow import Workflow

MODEL_T = TypeVar("MODEL_T", bound=BaseModel)
T = TypeVar("T", bound=Event)

# The serializer of the Context that started each run in this process, so that the
# steps of the run encode its state the same way (e.g. an opt-in PickleSerializer).
_run_serializers: weakref.WeakValueDictionary[str, BaseSerializer] = weakref.WeakValueDictionary()


class Context(Generic[MODEL_T]):
    """The context of a workflow run: its state store and its event channel.

    ``Context(workflow)`` names a context that ``workflow.run(ctx=ctx)`` runs in;
    running the same context again after its run completed starts a new run
    that keeps the state. ``Context.from_dict(workflow, data)`` restores one
    saved with ``to_dict()``; a snapshot taken mid-run resumes where it was.
    """

    def __init__(
        self,
        workflow: Workflow,
        previous_context: dict[str, Any] | None = None,
        serializer: BaseSerializer | None = None,
    ) -> None:
        self._workflow = workflow
        self._serializer = serializer or JsonSerializer()
        self._engine: Engine | None = None
        self._run_id: str | None = None
        self._handler: WorkflowHandler | None = None
        self._scope: StepScope | None = None
        self._run: RunRecord | None = None
        self._staging: StateStore[Any] | None = None
        self._restored: snapshots.Restored | None = None
        if previous_context is not None:
            self._restored = snapshots.parse(workflow, previous_context, self._serializer)

    # --- construction by the engine ---------------------------------------------------

    @classmethod
    def _for_step(
        cls, workflow: Workflow, engine: Engine, run: RunRecord, scope: StepScope
    ) -> Context[Any]:
        ctx: Context[Any] = cls.__new__(cls)
        ctx._workflow = workflow
        ctx._serializer = _run_serializers.get(run.run_id) or JsonSerializer()
        ctx._engine = engine
        ctx._run_id = run.run_id
        ctx._handler = None
        ctx._scope = scope
        ctx._run = run
        ctx._staging = None
        ctx._restored = None
        return ctx

    def _attach(self, engine: Engine, run_id: str, handler: WorkflowHandler | None) -> None:
        self._engine = engine
        self._run_id = run_id
        self._handler = handler
        self._staging = None
        _run_serializers[run_id] = self._serializer

    # --- state ------------------------------------------------------------------------

    def _codec(self) -> StateCodec[Any]:
        return StateCodec(self._workflow._plan().state_type, self._serializer)

    @property
    def store(self) -> StateStore[MODEL_T]:
        """The state store; usable before, during and after a run."""
        if self._engine is not None and self._run_id is not None:
            return StateStore(self._engine.store, self._run_id, self._codec(), self._engine.locks)
        if self._staging is None:
            codec = self._codec()
            state = codec.new()
            if self._restored is not None and self._restored.state is not None:
                state = codec.decode(codec.from_payload(self._restored.state, self._serializer))
            self._staging = InMemoryStateStore(state, self._serializer)
        return self._staging

    def _staged_state(self, serializer: BaseSerializer | None) -> dict[str, Any]:
        """The ``state`` of ``to_dict()`` before a run, as upstream writes it.

        The store's payload once it was used (or when a serializer is given);
        otherwise the restored state unchanged, or ``{}`` for a new context.
        """
        if self._staging is not None or serializer is not None:
            return self.store.to_dict(serializer or self._serializer)
        if self._restored is not None and self._restored.state is not None:
            return self._restored.state
        return {}

    def _seed_state(self) -> str | None:
        """The encoded state a new run of this context starts from, if any."""
        if self._staging is not None:
            return self._staging._codec.encode(asyncio_free_get(self._staging))
        if self._restored is not None and self._restored.state is not None:
            return self._codec().from_payload(self._restored.state, self._serializer)
        return None

    # --- identity and phase -------------------------------------------------------------

    @property
    def run_id(self) -> str | None:
        return self._run_id

    @property
    def is_running(self) -> bool:
        """Whether the run is under way; before a run, whether the restored snapshot was.

        Inside a step it is always True, and reading it there is deprecated.
        """
        if self._scope is not None:
            deprecated.warn_once(deprecated.IS_RUNNING_IN_STEP, stacklevel=2)
            return True
        if self._handler is not None:
            return not self._handler.is_done()
        return bool(self._restored and self._restored.is_running)

    def _require_step(self, name: str) -> StepScope:
        if self._scope is None:
            raise ContextStateError(f"{name} is only available from within step functions.")
        return self._scope

    def _require_run(self, name: str) -> None:
        if self._run_id is None:
            raise ContextStateError(
                f"{name} requires a running workflow. Call workflow.run() first."
            )

    # --- events -------------------------------------------------------------------------

    def send_event(self, message: Event, step: str | None = None) -> None:
        """Send an event into the run: to every step accepting its exact type, or to ``step``.

        From a step, events are routed when the step finishes, together with
        its returned event. From handler code they are routed at once.
        """
        if self._scope is None and self._run_id is None:
            raise ContextStateError(
                "send_event() called before workflow started. Call workflow.run() first."
            )
        self._workflow._plan().routing.check_target(message, step)
        if self._scope is not None:
            self._scope.sent.append((message, step))
            return
        assert self._handler is not None or self._engine is not None
        if self._handler is not None:
            self._handler._send_later(message, step)
        else:
            assert self._engine is not None and self._run_id is not None
            from stalkflow.handler import spawn

            spawn(self._engine.send_event(self._run_id, message, step))

    def collect_events(
        self, ev: Event, expected: list[type[Event]], buffer_id: str | None = None
    ) -> list[Event] | None:
        """Buffer ``ev`` until one event of each type in ``expected`` has arrived.

        Returns them in ``expected`` order once the set is complete, exactly once
        across all executions of the step; otherwise None.
        """
        scope = self._require_step("collect_events")
        if not expected:
            return []
        assert self._engine is not None and self._run_id is not None
        return self._engine.store.collect(
            self._run_id,
            (scope.delivery.step, buffer_id or "default"),
            scope.delivery.lineage_id,
            ev,
            list(expected),
        )

    async def wait_for_event(
        self,
        event_type: type[T],
        waiter_event: Event | None = None,
        waiter_id: str | None = None,
        requirements: dict[str, Any] | None = None,
        timeout: float | None = 2000,
    ) -> T:
        """Suspend the step until an event of exactly ``event_type`` arrives.

        The step ends here and holds no worker while it waits; when a matching
        event arrives (all ``requirements`` equal), the step runs again from
        the top and this call returns the event. Code before it must therefore
        be idempotent. ``waiter_event`` is published to the stream once, when
        the waiter is first registered.
        """
        scope = self._require_step("wait_for_event")
        requirements = requirements or {}
        key = waiter_id or (f"waiter_{event_type.__module__}.{event_type.__name__}_{requirements}")
        if key in scope.resolved:
            event = scope.resolved[key]
            if event is None:
                raise asyncio.TimeoutError(f"Timed out waiting for {event_type.__name__}")
            return event  # type: ignore[return-value]
        waiter = Waiter(key, event_type, dict(requirements), scope.delivery, timeout, waiter_event)
        raise WaitingForEvent(waiter, waiter_event)

    def write_event_to_stream(self, ev: Event | None) -> None:
        """Publish an event to the run's stream at once (``None`` is ignored)."""
        scope = self._require_step("write_event_to_stream")
        if ev is None:
            return
        assert self._engine is not None and self._run_id is not None
        coro = self._engine.store.append_stream(self._run_id, [ev])
        try:
            asyncio.get_running_loop()
            scope.writes.append(asyncio.ensure_future(coro))
        except RuntimeError:  # a sync step in a worker thread
            loop = self._step_loop()
            scope.writes.append(
                asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop), loop=loop)
            )

    def _step_loop(self) -> asyncio.AbstractEventLoop:
        scope = self._require_step("write_event_to_stream")
        loop = getattr(scope, "loop", None)
        if loop is None:
            raise WorkflowRuntimeError("No event loop is bound to this step")
        return loop  # type: ignore[no-any-return]

    @staticmethod
    def get_step_context() -> Context[Any]:
        """The context of the step running in the current task."""
        ctx = current_context()
        if ctx is None:
            raise WorkflowRuntimeError(
                "Context.get_step_context() may only be called from within a step function"
            )
        return ctx

    def retry_info(self) -> RetryInfo:
        """Which attempt of the current step this is, and why the last one failed."""
        scope = self._require_step("retry_info")
        delivery = scope.delivery
        if delivery.attempt <= 1:
            return RetryInfo(0, 0.0, None, None)
        error = delivery.last_error
        exception = None
        if error is not None:
            exception = error.exception or snapshots.rebuild_exception(error)
        failed_at = (
            datetime.fromtimestamp(delivery.last_failed_at, tz=timezone.utc)
            if delivery.last_failed_at
            else None
        )
        elapsed = time.time() - delivery.first_attempt_at if delivery.first_attempt_at else 0.0
        return RetryInfo(delivery.attempt - 1, elapsed, exception, failed_at)  # type: ignore[arg-type]

    async def running_steps(self) -> list[str]:
        """The steps with an execution under way in this run."""
        self._require_run("running_steps")
        assert self._engine is not None and self._run_id is not None
        snap = await self._engine.store.snapshot(self._run_id)
        return sorted({d.step for d in snap.in_progress}) if snap else []

    def stream_events(self) -> AsyncGenerator[Event, None]:
        return self._require_handler("stream_events").stream_events()

    def _require_handler(self, name: str) -> WorkflowHandler:
        if self._scope is not None:
            raise ContextStateError(
                f"{name} is only available from handler code, not from within steps."
            )
        if self._handler is None:
            raise ContextStateError(
                f"{name} requires a running workflow. Call workflow.run() first."
            )
        return self._handler

    def get_result(self) -> Any:
        """Deprecated: the run's result; prefer ``await workflow.run(..., ctx=ctx)``.

        Returns what awaiting the handler returns (the StopEvent's result) and
        raises the run's error the same way; ``WorkflowRuntimeError`` while the
        run is not over.
        """
        deprecated.warn_once(deprecated.GET_RESULT, stacklevel=1)
        return deprecated.run_result(self._require_handler("get_result"))

    @property
    def streaming_queue(self) -> asyncio.Queue[Event]:
        """Deprecated: an ``asyncio.Queue`` filled with the run's stream events.

        Prefer ``async for ev in ctx.stream_events()``. It consumes the run's
        stream, internal events included, up to the StopEvent.
        """
        deprecated.warn_once(deprecated.STREAMING_QUEUE, stacklevel=1)
        return deprecated.streaming_queue(self._require_handler("streaming_queue"))

    # --- serialization -------------------------------------------------------------------

    def to_dict(
        self, serializer: BaseSerializer | None = None, *, include_state: bool = True
    ) -> dict[str, Any]:
        """The context as a JSON-compatible dict, in upstream's format (version 2).

        Before a run it is the snapshot the run will start from: what the
        context was restored from, or empty workers and the staged state
        (``{}`` while ``store`` was never used, as upstream writes it). With
        ``include_state=False`` its ``state`` is left empty: restoring it starts
        from a fresh state store.
        """
        if self._scope is not None:
            raise ContextStateError(
                "to_dict is only available from handler code, not from within steps."
            )
        if self._engine is None or self._run_id is None:
            data = snapshots.export_initial(
                self._workflow, self._restored, self._staged_state(serializer)
            )
        else:
            data = snapshots.export(
                self._workflow,
                self._engine,
                self._run_id,
                self._codec(),
                serializer or self._serializer,
            )
        if not include_state:
            data["state"] = {}
        return data

    @classmethod
    def from_dict(
        cls,
        workflow: Workflow,
        data: dict[str, Any],
        serializer: BaseSerializer | None = None,
    ) -> Context[Any]:
        """Restore a context saved with ``to_dict()``; raises ``ContextSerdeError`` if malformed."""
        return cls(workflow, previous_context=data, serializer=serializer)


def asyncio_free_get(store: StateStore[Any]) -> Any:
    """The staged state, read without an event loop (the staging store never suspends)."""
    from stalkflow._sync import run_blocking

    return run_blocking(store.get_state)
