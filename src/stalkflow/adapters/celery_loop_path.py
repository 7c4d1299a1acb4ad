"""The loop path: step task messages executed on the worker's event loop, no pool thread.

With ``--pool=solo`` and ``--pool=threads``, on a broker with an event-driven
consumer (Redis, RabbitMQ), the step tasks' Celery *strategy* (``strategy_for``)
hands each message from the consumer thread straight to the process's event
loop, where as many executions run at once, as asyncio tasks, as the pool would
run tasks (solo: one; threads: its concurrency); prefetched messages beyond that
wait for a slot. Celery's ``Request`` is made and used as a pool's would be
(``task-received``, ``task-started``, ``task-succeeded`` or ``task-waiting``
events, ``celery inspect active``).

When an execution ends, the consumer thread sends what it released and then
acknowledges the message: ``acks_late`` as on the task path, so prefetch still
bounds the messages in hand and a message whose execution was cut short (the
process died) is redelivered. While the consumer cannot run (it reconnects to
the broker, or shuts down) a sender thread follows up instead, so that a failed
send is still noticed, marked in the store and retried; a warm shutdown waits
for the executions under way (``DrainStep``).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import bootsteps  # type: ignore[import-untyped]
from celery.worker.state import task_ready  # type: ignore[import-untyped]
from celery.worker.strategy import default as default_strategy  # type: ignore[import-untyped]

from stalkflow.adapters import celery_steps
from stalkflow.adapters._kombu_redis import keep_one_client
from stalkflow.adapters.celery_steps import (
    WAITING_EVENT,
    StepRunner,
    StepTask,
    describe,
    first_line,
    logger,
)
from stalkflow.core.deliveries import Delivery, Waiter
from stalkflow.errors import BackendError

#: Pools whose tasks run in this process: their step tasks take the loop path.
LOOP_POOLS = ("celery.concurrency.solo", "celery.concurrency.thread")


def strategy_for(runner: StepRunner, name: str) -> Callable[..., Any]:
    """The Celery strategy of step task ``name``: the loop path where the pool allows."""

    def start_strategy(task: Any, app: Any, consumer: Any, **kwargs: Any) -> Any:
        pool = getattr(consumer, "pool", None)
        if consumer.hub is None or type(pool).__module__ not in LOOP_POOLS:
            return default_strategy(task, app, consumer, **kwargs)
        path = runner.loop_path
        if path is None or path.consumer is not consumer:
            path = runner.loop_path = LoopPath(runner, consumer)
            _paths_of(app).append(path)
        path.hub_running()  # (re)started consumer: its hub runs again
        return default_strategy(
            task, app, _Handing(consumer, lambda request: path.start(name, request)), **kwargs
        )

    return start_strategy


class _Handing:
    """A consumer for Celery's default strategy, whose task requests go to the loop path.

    Everything else (ETA and rate-limited messages, whose requests reach the
    consumer's own ``on_task_request`` later, events, revocations) is the
    consumer's.
    """

    def __init__(self, consumer: Any, on_task_request: Callable[[Any], None]) -> None:
        self._consumer = consumer
        self.on_task_request = on_task_request

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


@dataclasses.dataclass
class _InFlight:
    """One message of the loop path, from its start to its acknowledgement."""

    name: str
    request: Any
    delivery: Delivery
    step_task: StepTask
    started: float
    attempt: int = 0
    task: asyncio.Task[Waiter | None] | None = None


class LoopPath:
    """Step task messages executed on the loop, followed up on the consumer's thread.

    The consumer thread (its event hub) starts an execution on the loop and goes
    on consuming. When the execution ends, the hub's thread sends what it
    released and acknowledges the message (then, the prefetch allowing, fetches
    the next one), as a solo pool does after its task. While the hub cannot run
    (the consumer reconnects after losing the broker, or shuts down), a sender
    thread follows up instead, so that a failed send is still noticed, marked in
    the store at once and retried, as on the task path.
    """

    def __init__(self, runner: StepRunner, consumer: Any) -> None:
        self.runner = runner
        self.consumer = consumer
        self.hub = consumer.hub
        # as many executions at once as the pool would run tasks (solo: one); the
        # prefetch may hand over more messages, which wait for a free slot, as they
        # would for a pool thread
        self._limit = max(1, int(getattr(consumer.pool, "limit", None) or 1))
        self._waiting: collections.deque[_InFlight] = collections.deque()
        # ended executions, followed up by the hub while it runs, else by the sender
        self._hub_runs = True
        self._for_hub: collections.deque[_InFlight] = collections.deque()
        self._ended: queue.SimpleQueue[_InFlight | None] = queue.SimpleQueue()
        self._sender: threading.Thread | None = None
        self._lock = threading.Lock()
        self._to_start: collections.deque[_InFlight] = collections.deque()
        self._start_pending = False
        self._in_flight: set[int] = set()
        self._idle = threading.Condition()
        self._stopping = False

    def start(self, name: str, request: Any) -> None:
        # its acknowledgement (and the next message's bookkeeping) reuse one client
        keep_one_client(getattr(request.message, "channel", None))
        delivery = self.runner.decode(name, request.args, request.kwargs)
        if delivery is None:  # logged; acknowledged as the task path would
            request.on_accepted(os.getpid(), time.monotonic())
            _succeeded(request, 0.0)
            return
        root = request.root_id or request.id
        step_task = StepTask(request.id, root, delivery.run_id, delivery.step)
        item = _InFlight(name, request, delivery, step_task, time.monotonic())
        with self._idle:
            if len(self._in_flight) >= self._limit:
                self._waiting.append(item)
                return
            self._in_flight.add(id(item))
        self._begin(item)

    def _begin(self, item: _InFlight) -> None:
        item.request.on_accepted(os.getpid(), time.monotonic())
        item.started = time.monotonic()
        self._submit(item)

    def _submit(self, item: _InFlight) -> None:
        # one wake-up of the loop for all the executions the hub starts in a turn
        with self._lock:
            self._to_start.append(item)
            if self._start_pending:
                return
            self._start_pending = True
        self.runner.loop.loop().call_soon_threadsafe(self._start_on_loop)

    def _start_on_loop(self) -> None:
        with self._lock:
            items, self._to_start = self._to_start, collections.deque()
            self._start_pending = False
        loop = asyncio.get_running_loop()
        for item in items:
            item.task = loop.create_task(self.runner.tracked(item.delivery, item.step_task))
            item.task.add_done_callback(functools.partial(self._ended_on_loop, item))

    def _ended_on_loop(self, item: _InFlight, _: object = None) -> None:
        with self._lock:
            if self._hub_runs:
                self._for_hub.append(item)
                self.hub.call_soon(self._finish_on_hub)
                return
        self._to_sender(item)

    def _finish_on_hub(self) -> None:
        while True:
            with self._lock:
                if not self._hub_runs or not self._for_hub:
                    return
                item = self._for_hub.popleft()
            self._finish(item)

    def hub_stopped(self) -> None:
        """The hub will not run for a while (a reconnection, a shutdown): use the sender."""
        with self._lock:
            self._hub_runs = False
            waiting, self._for_hub = self._for_hub, collections.deque()
        for item in waiting:
            self._to_sender(item)

    def hub_running(self) -> None:
        with self._lock:
            self._hub_runs = True

    def _to_sender(self, item: _InFlight) -> None:
        if self._sender is None:
            with self._lock:
                if self._sender is None:
                    self._sender = threading.Thread(
                        target=self._send_ended, name="stalkflow-sender", daemon=True
                    )
                    self._sender.start()
        self._ended.put(item)

    def _send_ended(self) -> None:
        while True:
            item = self._ended.get()
            if item is None:
                return
            try:
                self._finish(item)
            except Exception:  # never lose the sender
                logger.exception("Could not finish %s", describe(item.delivery))
                self._done(item)

    def _finish(self, item: _InFlight) -> None:
        """On the hub's (or the sender's) thread: send what was released, then acknowledge."""
        assert item.task is not None
        delivery, request = item.delivery, item.request
        try:
            waiter = item.task.result()
            self.runner.send_outbox(item.step_task, often=True)
        except asyncio.CancelledError:
            logger.info("Abandoned %s: the run has finished", describe(delivery))
            waiter = None
        except BackendError as exc:
            self._retry(item, exc)
            return
        except Exception:
            logger.exception("Dropped %s: executing it failed unexpectedly", describe(delivery))
            waiter = None
        if waiter is not None:
            request.send_event(
                WAITING_EVENT, run_id=delivery.run_id, step=delivery.step, timeout=waiter.timeout_s
            )
            task_ready(request)
            _acknowledge(request)
        else:
            _succeeded(request, time.monotonic() - item.started)
        self._done(item)
        self._wake_hub()

    def _retry(self, item: _InFlight, exc: BackendError) -> None:
        delivery, request = item.delivery, item.request
        backoff_s = celery_steps.OUTAGE_BACKOFF_S  # read at the time: tests shorten it
        if item.attempt >= len(backoff_s) or self._stopping:
            logger.error(
                "Requeued %s after repeated backend errors: %s", describe(delivery), first_line(exc)
            )
            task_ready(request)
            _acknowledge(request, requeue=True)
            self._done(item)
            self._wake_hub()
            return
        wait_s = backoff_s[item.attempt]
        item.attempt += 1
        logger.warning(
            "Backend error executing %s, retrying in %.1f s: %s",
            describe(delivery),
            wait_s,
            first_line(exc),
        )
        loop = self.runner.loop.loop()
        loop.call_soon_threadsafe(loop.call_later, wait_s, self._submit, item)

    def _wake_hub(self) -> None:
        """From the sender: wake the hub, which fetches the next message if prefetch allows."""
        if threading.current_thread() is self._sender:
            self.hub.call_soon(_next_message)

    def _done(self, item: _InFlight) -> None:
        with self._idle:
            self._in_flight.discard(id(item))
            following = None
            if self._waiting and not self._stopping:
                following = self._waiting.popleft()
                self._in_flight.add(id(following))
            if not self._in_flight:
                self._idle.notify_all()
        if following is not None:
            self._begin(following)

    def drain(self, timeout_s: float | None) -> None:
        """Wait until the executions under way have been followed up (a warm shutdown).

        Messages still waiting for a slot are not started: the broker gets them back
        unacknowledged, as it does a pool's reserved messages.
        """
        self._stopping = True
        self.hub_stopped()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._idle:
            while self._in_flight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                self._idle.wait(remaining)


def _next_message() -> None:
    """Nothing to do: waking the hub lets it ask for the next message (``on_poll_start``)."""


def _succeeded(request: Any, runtime_s: float) -> None:
    """What Celery's request does when its task succeeded (acks_late), acknowledging now."""
    task_ready(request, successful=True)
    _acknowledge(request)
    request.send_event("task-succeeded", result="None", runtime=runtime_s)


def _acknowledge(request: Any, *, requeue: bool | None = None) -> None:
    """Acknowledge (or, with ``requeue``, reject) the request's message at once.

    Celery's ``Request.acknowledge`` leaves the broker call to the consumer's hub,
    which does not run while the consumer reconnects or shuts down; kombu's
    acknowledgement is safe from another thread (Celery's threads pool relies
    on it), so the sender makes it itself.
    """
    if request.acknowledged:
        return
    message, errors = request.message, request.connection_errors
    if requeue is None:
        message.ack_log_error(logger, errors)
    else:
        message.reject_log_error(logger, errors, requeue=requeue)
    request.acknowledged = True
    if requeue is not None:
        request.send_event("task-rejected", requeue=requeue)


class DrainStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """A consumer step: a warm shutdown finishes the loop path's executions first.

    It stops before the task consumer and the broker connection, so that the
    steps under way commit, send what they released and acknowledge their
    messages, as pool tasks do at a warm shutdown.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def stop(self, consumer: Any) -> None:
        # A restart after a lost connection stops the steps too: the executions go
        # on, followed up by the sender until the consumer has reconnected.
        if consumer.blueprint.state == bootsteps.CLOSE:
            self.shutdown(consumer)
        else:
            for path in _paths_of(consumer.app):
                path.hub_stopped()

    def shutdown(self, consumer: Any) -> None:
        for path in _paths_of(consumer.app):
            path.drain(None)


def install_drain(app: Any) -> None:
    """Have ``app``'s workers finish their loop-path executions at a warm shutdown."""
    if getattr(app, "_stalkflow_loop_paths", None) is None:
        app._stalkflow_loop_paths = []
        app.steps["consumer"].add(DrainStep)


def _paths_of(app: Any) -> list[LoopPath]:
    paths: list[LoopPath] | None = getattr(app, "_stalkflow_loop_paths", None)
    if paths is None:
        paths = app._stalkflow_loop_paths = []
    return paths
