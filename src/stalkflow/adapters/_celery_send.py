"""Sending step task messages: through the app's producers, with less of ``send_task``'s work.

``Publisher`` sends a batch of messages (:class:`~stalkflow.adapters._celery_messages.Message`)
through a producer of the app's pool: a thread that sends after every execution
keeps one, other threads give theirs back. kombu's and the network's errors
become :class:`~stalkflow.errors.BrokerUnavailableError`, with the broker URL's
password redacted.

``Celery.send_task`` is general: it looks the task up, merges its execution
options, asks the router, builds the message, declares the queue, and sends
(signals and ``task-sent`` events included, from ``amqp.send_task_message``).
For a step message most of that is the same every time: a step's route depends
only on the queue it names (when the app has no ``task_routes`` of its own),
and its queue, once declared on a channel, stays declared. ``StepSender`` keeps
those per queue and builds and sends the message with Celery's own
``amqp.create_task_message`` and ``amqp.send_task_message``: the same headers,
properties, signals and events, for about half the CPU time. An app with
``task_routes`` gets ``send_task`` itself, so its routes apply.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from kombu.exceptions import KombuError

from stalkflow._urls import redact, redact_url
from stalkflow.adapters._celery_messages import Message
from stalkflow.adapters._kombu_redis import keep_one_client
from stalkflow.errors import BrokerUnavailableError


class StepSender:
    """Sends step messages through an app's producers (see the module doc)."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._routes: dict[str | None, dict[str, Any]] = {}

    def send(self, producer: Any, name: str, body: Any, options: Mapping[str, Any]) -> None:
        """Send one message of task ``name`` with a ``Message``'s options (ids, reprs, queue)."""
        app = self._app
        if app.conf.task_routes:
            app.send_task(name, args=[body], producer=producer, **options)
            return
        queue = options.get("queue")
        route = self._routes.get(queue)
        if route is None:
            route = self._routes[queue] = app.amqp.router.route(
                {"queue": queue} if queue is not None else {}, name, None, None, None
            )
        amqp = app.amqp
        message = amqp.create_task_message(
            options["task_id"],
            name,
            [body],
            {},
            countdown=options.get("countdown"),
            create_sent_event=app.conf.task_send_sent_event,
            root_id=options.get("root_id"),
            parent_id=options.get("parent_id"),
            ignore_result=True,
            argsrepr=options.get("argsrepr"),
            kwargsrepr=options.get("kwargsrepr"),
        )
        send: dict[str, Any] = dict(route)
        if options.get("priority") is not None:
            send["priority"] = options["priority"]
        # the queues declared on this channel (a new channel, after a reconnection,
        # declares again)
        declared = getattr(producer.channel, "_stalkflow_declared", None)
        if declared is None:
            declared = set()
            producer.channel._stalkflow_declared = declared
        if queue in declared:
            send["declare"] = []
        with producer.connection._reraise_as_library_errors():
            amqp.send_task_message(producer, name, message, serializer="json", **send)
        declared.add(queue)


class Publisher:
    """Sends step messages with an app's producers (see the module doc)."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._sender = StepSender(app)
        self._producers = threading.local()

    def publish(self, messages: Sequence[Message], keep_producer: bool = False) -> None:
        """Send messages (blocking); ``BrokerUnavailableError`` once Celery's retries are spent.

        ``keep_producer``: this thread sends often (a worker's consumer thread, after
        every execution) and keeps the producer it acquires from the app's pool; one
        that failed is given back and replaced. Other threads give theirs back.
        """
        try:
            if not keep_producer:
                with self._app.producer_or_acquire() as producer:
                    keep_one_client(getattr(producer, "channel", None))
                    for message in messages:
                        self._sender.send(producer, message.name, message.body, message.options)
                return
            producer = getattr(self._producers, "producer", None)
            if producer is None:
                producer = self._app.producer_pool.acquire(block=True)
                self._producers.producer = producer
                keep_one_client(getattr(producer, "channel", None))
            for message in messages:
                self._sender.send(producer, message.name, message.body, message.options)
        except (KombuError, OSError, AttributeError) as exc:
            # AttributeError: kombu's Redis transport, its connection half re-established
            # after an outage, can fail so ('NoneType' object has no attribute 'client').
            self._drop_producer()
            url = self._broker_url()
            reason = redact(f"{type(exc).__name__}: {exc}", self._app.conf.broker_url)
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
        url = self._app.conf.broker_url
        return redact_url(url) if isinstance(url, str) else "<default broker>"
