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

Flower sees the steps of one run as one tree: every message carries the run's
:func:`root_task_id` as Celery's ``root_id``, and the task that sent it as its
``parent_id`` (events sent from outside the steps, such as a human's answer,
hang under the root). A step that ends in ``ctx.wait_for_event`` sends the
custom task event ``task-waiting`` (run id, step, timeout; no payload) and ends
without ``task-succeeded``, so Flower shows it in the state ``WAITING``; the
answer re-runs the step as a new task, a child of that root.

This module holds the transport: registering step tasks, the ``Transport``
port, the worker's sweep. A message's name, ids and options are made in
``_celery_messages`` (``task_name`` and ``root_task_id`` are importable from
here too), sent by ``_celery_send``, and executed by ``celery_steps`` and
``celery_loop_path``.

Example::

    transport = CeleryTransport.from_url("redis://127.0.0.1:6379/0", codec=codec)
    transport.register_workflow(MyWorkflow())
    app = transport.app  # celery -A module:app worker
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from stalkflow.adapters._celery_messages import root_task_id, step_message, task_name
from stalkflow.adapters._celery_send import Publisher
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


def _no_workflows(name: str) -> Mapping[str, type[Event]]:
    raise LookupError(name)


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
        self._publisher = Publisher(app)
        self._runner = StepRunner(self._loop, self._publisher.publish, decoder(codec, task_name))
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
        messages = [
            step_message(delivery, delay_s, self._options_for(delivery), self._codec)
            for delivery in deliveries
        ]
        step_task = current_task.get()
        if step_task is not None and step_task.defers(deliveries):
            step_task.outbox.append(Outgoing(deliveries, delay_s, messages))
            return
        await asyncio.to_thread(self._publisher.publish, messages)

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
