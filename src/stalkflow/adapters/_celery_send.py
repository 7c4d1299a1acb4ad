"""Sending a step task's message: Celery's own message, with less of ``send_task``'s work.

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

from collections.abc import Mapping
from typing import Any


class StepSender:
    """Sends step messages through an app's producers (see the module doc)."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._routes: dict[str | None, dict[str, Any]] = {}

    def send(self, producer: Any, name: str, body: Any, options: Mapping[str, Any]) -> None:
        """Send one message of task ``name``, with ``_message`` options (ids, reprs, queue...)."""
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
