"""The Celery Transport: each delivery is a JSON message to the Celery task of its step.

Every ``@step`` of a registered workflow becomes one Celery task named
``<workflow_name>.<step_name>``, so Flower and ``celery inspect`` show steps by
name. ``dispatch`` sends a delivery as one JSON argument (the event codec's
``encode_delivery``) to that task, on the step's queue and priority, with a
countdown for a delay. A worker executes each message's delivery on the
process's one persistent event loop (``celery_steps``: straight from the
consumer with the solo and threads pools, from a pool thread otherwise), so
prefork, threads and solo pools all work; what an execution dispatches is sent
after it, by the thread that acknowledges its message.

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
``ctx.wait_for_event`` sends the custom task event
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
import contextlib
import dataclasses
import logging
import random
import re
import threading
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kombu.exceptions import KombuError

from stalkflow._urls import redact, redact_url
from stalkflow.adapters._celery_send import StepSender
from stalkflow.adapters._kombu_redis import keep_one_client
from stalkflow.adapters._worker_loop import WorkerLoop
from stalkflow.adapters.celery_app import CeleryApp, create_app, install_safe_inspection
from stalkflow.adapters.celery_loop_path import install_drain, strategy_for
from stalkflow.adapters.celery_steps import (
    OUTAGE_BACKOFF_S,
    SOFT_LIMIT_GRACE_S,
    WAITING_EVENT,
    Outgoing,
    StepRunner,
    current_task,
    decoder,
    describe,
)
from stalkflow.core.codec import EventCodec
from stalkflow.core.deliveries import Delivery
from stalkflow.decorators import CeleryOptions
from stalkflow.errors import BrokerUnavailableError
from stalkflow.events import StartEvent
from stalkflow.ports import Executor, Unsent

if TYPE_CHECKING:
    from stalkflow.events import Event
    from stalkflow.workflow import Workflow

__all__ = [
    "OUTAGE_BACKOFF_S",
    "SOFT_LIMIT_GRACE_S",
    "WAITING_EVENT",
    "CeleryApp",
    "CeleryTransport",
    "create_app",
    "describe",
    "root_task_id",
    "task_name",
]

logger = logging.getLogger("stalkflow.celery")

#: Options every step task has, whatever the step says.
STEP_TASK_OPTIONS: Mapping[str, Any] = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "serializer": "json",
    "typing": False,
}


_ROOT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "stalkflow:run-root")


def _task_id() -> str:
    """A fresh Celery task id: a random UUID 4, without asking the OS for entropy.

    Celery's own (``uuid.uuid4``) reads ``os.urandom``, a system call per message;
    a task id only has to be unique, not unpredictable. ``random`` reseeds in a
    forked child.
    """
    return str(uuid.UUID(int=random.getrandbits(128), version=4))


def root_task_id(run_id: str) -> str:
    """The Celery task id of a run's first step task: the ``root_id`` of all its tasks."""
    return str(uuid.uuid5(_ROOT_NAMESPACE, run_id))


def task_name(workflow: str, step: str) -> str:
    """The Celery task name of a step: ``"<workflow>.<step>"``."""
    return f"{workflow}.{step}"


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
        self._loop = WorkerLoop()
        self._runner = StepRunner(self._loop, self._publish, decoder(codec, task_name))
        self._sender = StepSender(app)
        self._producers = threading.local()
        self._lock = threading.Lock()
        self._options: dict[str, CeleryOptions] = {}
        self._owns_app = False
        self._sweeper: concurrent.futures.Future[None] | None = None
        self._signal_handlers: tuple[Callable[..., None], ...] = ()
        install_safe_inspection()  # `celery inspect active` shows argsrepr, never payloads
        install_drain(app)  # a warm shutdown finishes the steps under way

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
            body = self._runner.task_body(name)
            # Celery builds a signature from the function's name: keep it an identifier.
            body.__name__ = body.__qualname__ = re.sub(r"\W", "_", name)
            body.__doc__ = f"Executes deliveries of the stalkflow step {name}."
            self.app.task(
                name=name,
                bind=True,
                shared=False,
                lazy=False,
                Strategy=staticmethod(strategy_for(self._runner, name)),
                **STEP_TASK_OPTIONS,
                **limits,
            )(body)
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
        self._runner.bind(execute)

    def on_unsent(self, unsent: Unsent) -> None:
        """Bind what to tell about deliveries whose sending after their execution failed."""
        self._runner.on_unsent(unsent)

    async def dispatch(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None:
        """Send deliveries; those an execution here releases for its own run are sent after it.

        The thread that acknowledges the execution's message sends them (see
        ``celery_steps``), before the acknowledgement; anything else is sent now,
        off the loop (publishing blocks, and retries while the broker is away).
        """
        if not deliveries:
            return
        messages = [self._message(delivery, delay_s) for delivery in deliveries]
        step_task = current_task.get()
        if step_task is not None and step_task.defers(deliveries):
            step_task.outbox.append(Outgoing(deliveries, delay_s, messages))
            return
        await asyncio.to_thread(self._publish, messages)

    def run_finished(self, run_id: str) -> None:
        """Abandon this process's executions of the run still under way."""
        self._runner.abandon(run_id)

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
        if "task_id" not in send:
            send["task_id"] = _task_id()
        body = self._codec.encode_delivery(delivery)
        return _Message(task_name(delivery.workflow, delivery.step), body, send)

    @staticmethod
    def _lineage(delivery: Delivery, delay_s: float) -> dict[str, Any]:
        """Celery's ``task_id``/``root_id``/``parent_id``: a run's tasks form one tree."""
        current = current_task.get()
        if current is not None and current.run_id == delivery.run_id:
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

    def _publish(self, messages: Sequence[_Message], keep_producer: bool = False) -> None:
        """Send messages (blocking); ``BrokerUnavailableError`` once Celery's retries are spent.

        ``keep_producer``: this thread sends often (a worker's consumer thread, after
        every execution) and keeps the producer it acquires from the app's pool; one
        that failed is given back and replaced. Other threads give theirs back.
        """
        try:
            if not keep_producer:
                with self.app.producer_or_acquire() as producer:
                    keep_one_client(getattr(producer, "channel", None))
                    for message in messages:
                        self._sender.send(producer, message.name, message.body, message.options)
                return
            producer = getattr(self._producers, "producer", None)
            if producer is None:
                producer = self.app.producer_pool.acquire(block=True)
                self._producers.producer = producer
                keep_one_client(getattr(producer, "channel", None))
            for message in messages:
                self._sender.send(producer, message.name, message.body, message.options)
        except (KombuError, OSError, AttributeError) as exc:
            # AttributeError: kombu's Redis transport, its connection half re-established
            # after an outage, can fail so ('NoneType' object has no attribute 'client').
            self._drop_producer()
            url = self._broker_url()
            reason = redact(f"{type(exc).__name__}: {exc}", self.app.conf.broker_url)
            raise BrokerUnavailableError(
                f"Cannot send {len(messages)} message(s) to the broker at {url}: {reason}"
            ) from exc

    def _drop_producer(self) -> None:
        producer = getattr(self._producers, "producer", None)
        self._producers.producer = None
        if producer is not None:
            with contextlib.suppress(Exception):
                producer.release()

    def _broker_url(self) -> str:
        url = self.app.conf.broker_url
        return redact_url(url) if isinstance(url, str) else "<default broker>"
