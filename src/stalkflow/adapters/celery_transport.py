"""The Celery Transport: each delivery is a JSON message to the Celery task of its step.

Every ``@step`` of a registered workflow becomes one Celery task named
``<workflow_name>.<step_name>``, so Flower and ``celery inspect`` show steps by
name. ``dispatch`` sends a delivery as one JSON argument (the event codec's
``encode_delivery``) to that task, on the step's queue and priority, with a
countdown for a delay. A worker's task body decodes the message and awaits the
engine's executor on the process's one persistent event loop (see
``_worker_loop``), so prefork, threads and solo pools all work.

Delivery guarantees (DESIGN §6): tasks are ``acks_late`` and
``reject_on_worker_lost``, so a worker killed mid-step has its message
redelivered and the step re-runs (bodies are at-least-once; the store's commit
is idempotent per delivery id). Prefetch is 1, the wire is JSON only, results
are ignored.

Bad input never stops a worker: a malformed message, one for another task, or
one naming an event type the workflow does not register is logged (run id,
step, reason, never the payload) and dropped. A store or broker outage while
executing is retried a few times in place, then the message is requeued.
Flower and logs show ``run_id``, step, event type and attempt only
(``argsrepr``/``kwargsrepr``).

Flower sees the steps of one run as one tree: the first step task's id is
:func:`root_task_id` of the run (any process can compute it), every message
carries it as Celery's ``root_id``, and a message sent while a step task
executes names that task as its ``parent_id`` (events sent from outside the
steps, such as a human's answer, hang under the root). A step that ends in
``ctx.wait_for_event`` (with a timeout, the default) sends the custom task event
``task-waiting`` (run id, step, timeout; no payload) and ends without
``task-succeeded``, so Flower shows it in the state ``WAITING``; the answer
re-runs the step as a new task, a child of that root.

Example::

    transport = CeleryTransport.from_url("redis://127.0.0.1:6379/0", codec=codec)
    transport.register_workflow(MyWorkflow())
    app = transport.app  # celery -A module:app worker
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celery.exceptions import (  # type: ignore[import-untyped]
    Ignore,
    Reject,
    SoftTimeLimitExceeded,
)
from kombu.exceptions import KombuError

from stalkflow._urls import redact, redact_url
from stalkflow.adapters._worker_loop import WorkerLoop
from stalkflow.adapters.celery_app import CeleryApp, create_app, install_safe_inspection
from stalkflow.core.codec import EventCodec
from stalkflow.core.deliveries import Delivery
from stalkflow.decorators import CeleryOptions
from stalkflow.errors import BackendError, BrokerUnavailableError, EventCodecError
from stalkflow.events import StartEvent
from stalkflow.ports import Executor

if TYPE_CHECKING:
    from stalkflow.events import Event
    from stalkflow.workflow import Workflow

__all__ = [
    "WAITING_EVENT",
    "CeleryApp",
    "CeleryTransport",
    "create_app",
    "describe",
    "root_task_id",
    "task_name",
]

logger = logging.getLogger("stalkflow.celery")

#: Waits (seconds) between in-place re-executions after a store or broker outage.
OUTAGE_BACKOFF_S: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
#: After Celery's soft time limit fires, how long the executor gets to fail the step
#: by its own (equal) limit, so that the retry policy and ``@catch_error`` apply.
SOFT_LIMIT_GRACE_S = 5.0

#: Options every step task has, whatever the step says.
STEP_TASK_OPTIONS: Mapping[str, Any] = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "serializer": "json",
    "typing": False,
}


#: The custom Celery task event of a step task that ended waiting for an event.
WAITING_EVENT = "task-waiting"

_ROOT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "stalkflow:run-root")


def root_task_id(run_id: str) -> str:
    """The Celery task id of a run's first step task: the ``root_id`` of all its tasks."""
    return str(uuid.uuid5(_ROOT_NAMESPACE, run_id))


@dataclasses.dataclass
class _StepTask:
    """The step task executing here: what the messages it sends name as root and parent."""

    task_id: str
    root_id: str
    run_id: str
    step: str
    #: Set when the execution registered a waiter with a timeout (seconds).
    waiting_s: float | None = None


#: The step task of the delivery executing in this asyncio task (worker side).
_current_task: contextvars.ContextVar[_StepTask | None] = contextvars.ContextVar(
    "stalkflow_step_task", default=None
)


def task_name(workflow: str, step: str) -> str:
    """The Celery task name of a step: ``"<workflow>.<step>"``."""
    return f"{workflow}.{step}"


def describe(delivery: Delivery) -> str:
    """What logs and Flower may show of a delivery: ids, step, type, attempt; no payload."""
    return (
        f"run_id={delivery.run_id} step={delivery.step} "
        f"event={type(delivery.event).__name__} attempt={delivery.attempt}"
    )


def _no_workflows(name: str) -> Mapping[str, type[Event]]:
    raise LookupError(name)


@dataclasses.dataclass(frozen=True)
class _Message:
    name: str
    body: dict[str, Any]
    options: dict[str, Any]


class CeleryTransport:
    """A ``Transport`` that carries deliveries as Celery messages to step tasks.

    Args:
        app: The Celery app to send with and to register step tasks on.
        codec: Encodes deliveries (and decodes them on workers); a worker's codec
            accepts only the event types of its registered workflows.
        workflows: Finds a workflow by name, to learn a step's queue and
            priority when its task was not registered in this process (a
            client that only submits). ``None``: Celery's defaults.
    """

    def __init__(
        self,
        app: CeleryApp,
        codec: EventCodec,
        *,
        workflows: Callable[[str], Workflow] | None = None,
    ) -> None:
        self.app = app
        self._codec = codec
        self._workflows = workflows
        self._execute: Executor | None = None
        self._loop = WorkerLoop()
        self._lock = threading.Lock()
        self._options: dict[str, CeleryOptions] = {}
        self._running: dict[str, set[asyncio.Task[None]]] = {}
        self._owns_app = False
        self._sweeper: concurrent.futures.Future[None] | None = None
        self._signal_handlers: tuple[Callable[..., None], ...] = ()
        install_safe_inspection()  # `celery inspect active` shows argsrepr, never payloads

    @classmethod
    def from_url(
        cls,
        broker_url: str,
        *,
        codec: EventCodec | None = None,
        queue: str = "stalkflow",
        visibility_timeout_s: float = 3600.0,
        workflows: Callable[[str], Workflow] | None = None,
    ) -> CeleryTransport:
        """A transport with its own app on ``broker_url``; steps with no queue use ``queue``.

        Without a ``codec`` only stalkflow's built-in event types are accepted.
        """
        app = create_app(broker_url, queue=queue, visibility_timeout_s=visibility_timeout_s)
        transport = cls(app, codec or EventCodec(_no_workflows), workflows=workflows)
        transport._owns_app = True
        return transport

    # --- registering step tasks -------------------------------------------------------

    def register_workflow(self, workflow: Workflow) -> list[str]:
        """Register a Celery task for every step of ``workflow``; return their names."""
        return [
            self.register_step(workflow.workflow_name, step, config.celery)
            for step, config in workflow.step_configs().items()
        ]

    def register_step(self, workflow: str, step: str, options: CeleryOptions | None = None) -> str:
        """Register the task of one step (idempotent); return its name."""
        name = task_name(workflow, step)
        options = options or CeleryOptions()
        with self._lock:
            self._options[name] = options
            if name in self.app.tasks:
                return name
            limits = {
                key: value
                for key, value in (
                    ("rate_limit", options.rate_limit),
                    ("time_limit", options.time_limit),
                    ("soft_time_limit", options.soft_time_limit),
                )
                if value is not None
            }
            self.app.task(
                name=name, bind=True, shared=False, lazy=False, **STEP_TASK_OPTIONS, **limits
            )(self._task_body(name))
        return name

    def _options_for(self, delivery: Delivery) -> CeleryOptions:
        name = task_name(delivery.workflow, delivery.step)
        options = self._options.get(name)
        if options is not None:
            return options
        options = CeleryOptions()
        if self._workflows is not None:
            try:
                config = self._workflows(delivery.workflow).step_configs().get(delivery.step)
            except LookupError:
                config = None
            if config is not None:
                options = config.celery
        self._options[name] = options
        return options

    # --- the Transport port -----------------------------------------------------------

    def start(self, execute: Executor) -> None:
        self._execute = execute

    async def dispatch(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None:
        if not deliveries:
            return
        messages = [self._message(delivery, delay_s) for delivery in deliveries]
        # Publishing blocks (and retries while the broker is away): keep it off the loop.
        await asyncio.to_thread(self._publish, messages)

    def run_finished(self, run_id: str) -> None:
        """Abandon this process's executions of the run still under way."""
        with self._lock:
            tasks = self._running.pop(run_id, set())
        if not tasks:
            return
        try:
            current = asyncio.current_task()
        except RuntimeError:
            current = None
        loop = self._loop.loop()
        for task in tasks:
            if task is not current:
                loop.call_soon_threadsafe(task.cancel)

    def sweep_in_workers(self, sweep: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``sweep()`` on this process's loop while a worker of this app runs here.

        ``sweep`` is the engine's periodic sweep (``Executor.sweep_forever``): it
        re-sends deliveries whose worker died or whose message was lost, and
        retries kept in the store until due. It starts when the worker is ready
        (in the main process, whatever the pool) and stops at its shutdown;
        a process that only sends (a client) never sweeps.
        """
        from celery import signals  # type: ignore[import-untyped]

        def ready(sender: Any = None, **_: Any) -> None:
            if getattr(sender, "app", None) is self.app and self._sweeper is None:
                self._sweeper = self._loop.submit(sweep())
                logger.info("Sweeping for lost and delayed deliveries")

        def shutdown(sender: Any = None, **_: Any) -> None:
            if getattr(sender, "app", None) is self.app:
                self.stop_sweeping()

        signals.worker_ready.connect(ready, weak=False)
        signals.worker_shutdown.connect(shutdown, weak=False)
        self._signal_handlers = (ready, shutdown)

    def stop_sweeping(self) -> None:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()

    def close(self) -> None:
        """Stop this process's event loop; close the app if this transport created it."""
        self.stop_sweeping()
        if self._signal_handlers:
            from celery import signals

            ready, shutdown = self._signal_handlers
            signals.worker_ready.disconnect(ready)
            signals.worker_shutdown.disconnect(shutdown)
            self._signal_handlers = ()
        self._loop.close()
        if self._owns_app:
            self.app.close()

    # --- sending ------------------------------------------------------------------------

    def _message(self, delivery: Delivery, delay_s: float) -> _Message:
        options = self._options_for(delivery)
        send: dict[str, Any] = {
            "argsrepr": f"({describe(delivery)})",
            "kwargsrepr": "{}",
            "serializer": "json",
        }
        if delay_s > 0:
            send["countdown"] = delay_s
        if options.queue is not None:
            send["queue"] = options.queue
        if options.priority is not None:
            send["priority"] = options.priority
        send.update(self._lineage(delivery, delay_s))
        body = self._codec.encode_delivery(delivery)
        return _Message(task_name(delivery.workflow, delivery.step), body, send)

    @staticmethod
    def _lineage(delivery: Delivery, delay_s: float) -> dict[str, Any]:
        """Celery's ``task_id``/``root_id``/``parent_id``: a run's tasks form one tree."""
        current = _current_task.get()
        if current is not None and current.run_id == delivery.run_id:
            if (
                delivery.expires_waiter is not None
                and delivery.step == current.step
                and delay_s > 0
            ):
                current.waiting_s = delay_s  # the timer of the waiter this task registered
            return {"root_id": current.root_id, "parent_id": current.task_id}
        root = root_task_id(delivery.run_id)
        is_start = (
            isinstance(delivery.event, StartEvent)
            and delivery.attempt == 1
            and not delivery.resolved
            and delivery.expires_waiter is None
        )
        if is_start:
            return {"task_id": root, "root_id": root}
        return {"root_id": root, "parent_id": root}

    def _publish(self, messages: Sequence[_Message]) -> None:
        try:
            with self.app.producer_or_acquire() as producer:
                for message in messages:
                    self.app.send_task(
                        message.name, args=[message.body], producer=producer, **message.options
                    )
        except (KombuError, OSError, AttributeError) as exc:
            # AttributeError: kombu's Redis transport, its connection half re-established
            # after an outage, can fail so ('NoneType' object has no attribute 'client').
            url = self._broker_url()
            reason = redact(f"{type(exc).__name__}: {exc}", self.app.conf.broker_url)
            raise BrokerUnavailableError(
                f"Cannot send {len(messages)} message(s) to the broker at {url}: {reason}"
            ) from exc

    def _broker_url(self) -> str:
        url = self.app.conf.broker_url
        return redact_url(url) if isinstance(url, str) else "<default broker>"

    # --- executing (on a worker) ----------------------------------------------------------

    def _task_body(self, name: str) -> Callable[..., None]:
        def execute_step(task: Any, *args: Any, **kwargs: Any) -> None:
            delivery = self._decode(name, args, kwargs)
            if delivery is None:
                return
            request = task.request
            current = None
            if request.id:
                current = _StepTask(
                    request.id, request.root_id or request.id, delivery.run_id, delivery.step
                )
            self._execute_here(delivery, current)
            if current is not None and current.waiting_s is not None and not request.is_eager:
                self._report_waiting(task, delivery, current.waiting_s)

        # Celery builds a signature from the function's name: keep it an identifier.
        execute_step.__name__ = execute_step.__qualname__ = re.sub(r"\W", "_", name)
        execute_step.__doc__ = f"Executes deliveries of the stalkflow step {name}."
        return execute_step

    @staticmethod
    def _report_waiting(task: Any, delivery: Delivery, timeout_s: float) -> None:
        """Show the task as ``WAITING`` in Flower: a custom event, and no ``task-succeeded``."""
        try:
            task.send_event(
                WAITING_EVENT, run_id=delivery.run_id, step=delivery.step, timeout=timeout_s
            )
        except Exception as exc:  # monitoring must never fail a step
            logger.warning("Could not send %s for %s: %s", WAITING_EVENT, describe(delivery), exc)
            return
        # Ignore acknowledges the message and sends no task-succeeded event.
        raise Ignore(f"waiting for an event: {describe(delivery)}")

    def _decode(self, name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Delivery | None:
        if len(args) != 1 or kwargs:
            logger.error(
                "Dropped a malformed message for task %s: expected one encoded delivery, "
                "got %d positional and %d keyword argument(s)",
                name,
                len(args),
                len(kwargs),
            )
            return None
        try:
            delivery = self._codec.decode_delivery(args[0])
        except EventCodecError as exc:
            logger.error(
                "Dropped a message for task %s (%s): %s",
                name,
                _ids_of(args[0]),
                _first_line(exc),
            )
            return None
        if task_name(delivery.workflow, delivery.step) != name:
            logger.error(
                "Dropped a message for task %s: it carries a delivery for %s (%s)",
                name,
                task_name(delivery.workflow, delivery.step),
                describe(delivery),
            )
            return None
        return delivery

    def _execute_here(self, delivery: Delivery, current: _StepTask | None = None) -> None:
        if self._execute is None:
            raise RuntimeError("CeleryTransport.start() was not called: no executor is bound")
        for wait_s in (*OUTAGE_BACKOFF_S, None):
            try:
                self._run(self._tracked(self._execute, delivery, current))
                return
            except concurrent.futures.CancelledError:
                logger.info("Abandoned %s: the run has finished", describe(delivery))
                return
            except SoftTimeLimitExceeded:
                # A limit the step itself does not declare (an app-wide one): the
                # execution is abandoned; the store re-sends it once its lease runs out.
                logger.error(
                    "Soft time limit exceeded, execution abandoned: %s", describe(delivery)
                )
                raise
            except BackendError as exc:
                if wait_s is None:
                    logger.error(
                        "Requeued %s after repeated backend errors: %s",
                        describe(delivery),
                        _first_line(exc),
                    )
                    raise Reject(f"backend unavailable: {_first_line(exc)}", requeue=True) from exc
                logger.warning(
                    "Backend error executing %s, retrying in %.1f s: %s",
                    describe(delivery),
                    wait_s,
                    _first_line(exc),
                )
                time.sleep(wait_s)
            except Exception:
                logger.exception("Dropped %s: executing it failed unexpectedly", describe(delivery))
                return

    def _run(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run an execution on the loop and wait for it from this pool thread.

        Celery's soft time limit (prefork) interrupts the wait: the executor
        enforces the step's declared limit itself and fails the step, so that its
        retry policy and ``@catch_error`` apply; it gets ``SOFT_LIMIT_GRACE_S`` to.
        """
        future = self._loop.submit(coro)
        try:
            future.result()
        except SoftTimeLimitExceeded:
            try:
                future.result(SOFT_LIMIT_GRACE_S)
            except concurrent.futures.TimeoutError:
                future.cancel()
                raise SoftTimeLimitExceeded() from None
        except BaseException:
            future.cancel()
            raise

    async def _tracked(
        self, execute: Executor, delivery: Delivery, current: _StepTask | None = None
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        _current_task.set(current)  # this asyncio task's own context
        with self._lock:
            self._running.setdefault(delivery.run_id, set()).add(task)
        try:
            await execute(delivery)
        finally:
            with self._lock:
                tasks = self._running.get(delivery.run_id)
                if tasks is not None:
                    tasks.discard(task)
                    if not tasks:
                        del self._running[delivery.run_id]


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """An error's first line: validation errors list input values on later lines."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _ids_of(body: Any) -> str:
    if not isinstance(body, dict):
        return f"body is {type(body).__name__}"
    fields = []
    for key in ("run_id", "step", "attempt"):
        value = body.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            fields.append(f"{key}={str(value)[:80]}")
    return " ".join(fields) or "no run id"
