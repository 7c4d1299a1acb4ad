"""Executing step tasks in a Celery worker process.

A step task's message carries one delivery; the engine's executor runs it on
the process's one persistent event loop (``_worker_loop``). Two ways lead there:

- **the loop path** (``--pool=solo`` and ``--pool=threads``, on a broker with an
  event-driven consumer: Redis, RabbitMQ): the step tasks' Celery *strategy*
  hands each message straight from the consumer thread to the loop, where as
  many deliveries execute at once, as asyncio tasks, as the pool would run tasks
  (solo: one; threads: its concurrency); no pool thread is involved. When an
  execution ends, the consumer thread sends what it released and then
  acknowledges the message: ``acks_late`` as before, so prefetch still bounds
  the messages in hand, and a message whose execution was cut short (the
  process died) is redelivered as before. While the consumer cannot run (it
  reconnects to the broker, or shuts down) a sender thread does that instead; a
  warm shutdown waits for the executions under way (``DrainStep``). Celery's
  events and ``celery inspect`` see these tasks as they see pool tasks
  (received, started, succeeded, or ``task-waiting``);
- **the task path** (every other pool, eager calls, rate-limited or delayed
  messages): the task body, on a pool thread, runs the execution on the loop and
  waits for it, then sends what it released, then returns.

Either way a delivery the execution dispatches for its own run is sent by the
consumer or pool thread *after* the execution (``SendsLater``), as a Celery task
sends its follow-ups: no thread handoff per message. Should that sending fail,
the store marks those deliveries for a resend (the engine's ``unsent``) and the
execution is retried in place (0.5, 1, 2, 4 s); it is then ``DUPLICATE`` and
re-sends them from the store's outbox. A store or broker outage during the
execution is retried the same way, then the message is requeued.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from celery.exceptions import (  # type: ignore[import-untyped]
    Ignore,
    Reject,
    SoftTimeLimitExceeded,
)

from stalkflow.adapters._worker_loop import WorkerLoop
from stalkflow.core.codec import EventCodec
from stalkflow.core.deliveries import Delivery, Waiter
from stalkflow.errors import BackendError, EventCodecError
from stalkflow.ports import Executor, Unsent

logger = logging.getLogger("stalkflow.celery")

#: Waits (seconds) between in-place re-executions after a store or broker outage.
OUTAGE_BACKOFF_S: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
#: After Celery's soft time limit fires, how long the executor gets to fail the step
#: by its own (equal) limit, so that the retry policy and ``@catch_error`` apply.
SOFT_LIMIT_GRACE_S = 5.0
#: The custom Celery task event of a step task that ended waiting for an event.
WAITING_EVENT = "task-waiting"


@dataclasses.dataclass(frozen=True)
class Outgoing:
    """Messages to send: the deliveries they carry (for ``unsent``), their delay."""

    deliveries: Sequence[Delivery]
    delay_s: float
    messages: Sequence[Any]


@dataclasses.dataclass
class StepTask:
    """The step task executing here: what the messages it sends name as root and parent.

    ``outbox`` holds what its execution dispatched for its own run, sent after
    the execution by the thread that waits for it.
    """

    task_id: str
    root_id: str
    run_id: str
    step: str
    task: asyncio.Task[Any] | None = None
    outbox: list[Outgoing] = dataclasses.field(default_factory=list)

    def defers(self, deliveries: Sequence[Delivery]) -> bool:
        """Whether a dispatch of ``deliveries`` now may wait for the end of this execution.

        Only the execution's own asyncio task, for its own run: anything else
        (a sub-workflow a step starts, another run) is sent at once.
        """
        if self.task is None or self.task.done():
            return False
        try:
            current = asyncio.current_task()
        except RuntimeError:
            return False
        return current is self.task and all(d.run_id == self.run_id for d in deliveries)


#: The step task of the delivery executing in this asyncio task (worker side).
current_task: contextvars.ContextVar[StepTask | None] = contextvars.ContextVar(
    "stalkflow_step_task", default=None
)

#: Sends messages (blocking; the flag: the thread sends often); ``BrokerUnavailableError``.
Publish = Callable[[Sequence[Any], bool], None]
#: Decodes a message's arguments into a delivery for the named task, or None (logged).
Decode = Callable[[str, Sequence[Any], Mapping[str, Any]], "Delivery | None"]


class StepRunner:
    """Executes step tasks' deliveries on this process's event loop (see the module doc)."""

    def __init__(self, loop: WorkerLoop, publish: Publish, decode: Decode) -> None:
        self.loop = loop
        self._publish = publish
        self._decode = decode
        self._execute: Executor | None = None
        self._unsent: Unsent | None = None
        self._lock = threading.Lock()
        self._running: dict[str, set[asyncio.Task[Any]]] = {}
        #: The loop path of this process's consumer, once made (``celery_loop_path``).
        self.loop_path: Any = None

    def bind(self, execute: Executor) -> None:
        self._execute = execute

    def on_unsent(self, unsent: Unsent) -> None:
        self._unsent = unsent

    @property
    def executor(self) -> Executor:
        if self._execute is None:
            raise RuntimeError("CeleryTransport.start() was not called: no executor is bound")
        return self._execute

    # --- executions under way ---------------------------------------------------------

    async def tracked(self, delivery: Delivery, step_task: StepTask | None) -> Waiter | None:
        """Execute ``delivery`` as an asyncio task known by its run (``abandon``)."""
        task = asyncio.current_task()
        assert task is not None
        if step_task is not None:
            step_task.task = task
        current_task.set(step_task)  # this asyncio task's own context
        with self._lock:
            self._running.setdefault(delivery.run_id, set()).add(task)
        try:
            return await self.executor(delivery)
        finally:
            with self._lock:
                tasks = self._running.get(delivery.run_id)
                if tasks is not None:
                    tasks.discard(task)
                    if not tasks:
                        del self._running[delivery.run_id]

    def abandon(self, run_id: str) -> None:
        """Cancel this process's executions of a run that has ended (but the caller's)."""
        with self._lock:
            tasks = self._running.pop(run_id, set())
        if not tasks:
            return
        try:
            current = asyncio.current_task()
        except RuntimeError:
            current = None
        loop = self.loop.loop()
        for task in tasks:
            if task is not current:
                loop.call_soon_threadsafe(task.cancel)

    def decode(self, name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Delivery | None:
        return self._decode(name, args, kwargs)

    def send_outbox(self, step_task: StepTask, *, often: bool = False) -> None:
        """Send what the execution dispatched; on failure mark it in the store and raise.

        ``often``: the calling thread follows up every execution (keeps a producer).
        """
        outbox, step_task.outbox = step_task.outbox, []
        for index, outgoing in enumerate(outbox):
            try:
                self._publish(outgoing.messages, often)
            except BackendError as exc:
                for unsent in outbox[index:]:
                    self._mark_unsent(unsent, exc)
                raise

    def _mark_unsent(self, outgoing: Outgoing, error: BaseException) -> None:
        if self._unsent is None:
            return
        unsent = self._unsent

        async def mark() -> None:
            await unsent(outgoing.deliveries, outgoing.delay_s, error)

        try:
            self.loop.run(mark())
        except Exception as exc:  # the store is away too: the sweep sends them in time
            count = len(outgoing.deliveries)
            logger.warning("Could not mark %d unsent delivery(ies): %s", count, exc)

    # --- the task path ----------------------------------------------------------------

    def task_body(self, name: str) -> Callable[..., None]:
        """The body of the Celery task ``name``: one delivery, executed and followed up."""

        def execute_step(task: Any, *args: Any, **kwargs: Any) -> None:
            delivery = self._decode(name, args, kwargs)
            if delivery is None:
                return
            request = task.request
            step_task = None
            if request.id:
                step_task = StepTask(
                    request.id, request.root_id or request.id, delivery.run_id, delivery.step
                )
            waiter = self.execute_here(delivery, step_task)
            if waiter is not None and request.id and not request.is_eager:
                report_waiting(task, delivery, waiter)

        return execute_step

    def execute_here(self, delivery: Delivery, step_task: StepTask | None) -> Waiter | None:
        """Execute on the loop from this (pool) thread, retrying in place after outages."""
        for wait_s in (*OUTAGE_BACKOFF_S, None):
            try:
                waiter = self._wait_for(self.tracked(delivery, step_task))
                if step_task is not None:
                    self.send_outbox(step_task)
                return waiter
            except concurrent.futures.CancelledError:
                logger.info("Abandoned %s: the run has finished", describe(delivery))
                return None
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
                        first_line(exc),
                    )
                    raise Reject(f"backend unavailable: {first_line(exc)}", requeue=True) from exc
                logger.warning(
                    "Backend error executing %s, retrying in %.1f s: %s",
                    describe(delivery),
                    wait_s,
                    first_line(exc),
                )
                time.sleep(wait_s)
            except Exception:
                logger.exception("Dropped %s: executing it failed unexpectedly", describe(delivery))
                return None
        return None  # unreachable: the last wait is None

    def _wait_for(self, coro: Coroutine[Any, Any, Waiter | None]) -> Waiter | None:
        """Run an execution on the loop and wait for it from this pool thread.

        Celery's soft time limit (prefork) interrupts the wait: the executor
        enforces the step's declared limit itself and fails the step, so that its
        retry policy and ``@catch_error`` apply; it gets ``SOFT_LIMIT_GRACE_S`` to.
        """
        future = self.loop.submit(coro)
        try:
            return future.result()
        except SoftTimeLimitExceeded:
            try:
                return future.result(SOFT_LIMIT_GRACE_S)
            except concurrent.futures.TimeoutError:
                future.cancel()
                raise SoftTimeLimitExceeded() from None
        except BaseException:
            future.cancel()
            raise


def report_waiting(task: Any, delivery: Delivery, waiter: Waiter) -> None:
    """Show the task as ``WAITING`` in Flower: a custom event, and no ``task-succeeded``."""
    try:
        task.send_event(
            WAITING_EVENT, run_id=delivery.run_id, step=delivery.step, timeout=waiter.timeout_s
        )
    except Exception as exc:  # monitoring must never fail a step
        logger.warning("Could not send %s for %s: %s", WAITING_EVENT, describe(delivery), exc)
        return
    # Ignore acknowledges the message and sends no task-succeeded event.
    raise Ignore(f"waiting for an event: {describe(delivery)}")


def decoder(codec: EventCodec, task_name: Callable[[str, str], str]) -> Decode:
    """Decodes a step task's arguments, logging (never the payload) and dropping bad ones."""

    def decode(name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Delivery | None:
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
            delivery = codec.decode_delivery(args[0])
        except EventCodecError as exc:
            logger.error(
                "Dropped a message for task %s (%s): %s", name, _ids_of(args[0]), first_line(exc)
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

    return decode


def describe(delivery: Delivery) -> str:
    """What logs and Flower may show of a delivery: ids, step, type, attempt; no payload."""
    return (
        f"run_id={delivery.run_id} step={delivery.step} "
        f"event={type(delivery.event).__name__} attempt={delivery.attempt}"
    )


def first_line(exc: BaseException, limit: int = 300) -> str:
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
