"""The consumer of stalkflow's Celery workers: it never logs a message's body.

Celery's own consumer logs the full body of a message it cannot handle (a
task this worker does not have, an invalid or undecodable message). A
stalkflow message's body is the delivery with its event payload, and DESIGN §7
says logs show run id, step, event type and attempt only: this consumer logs
the task name, id and headers (whose ``argsrepr`` is the safe description)
with the body withheld, and otherwise does what Celery's does (reject or ack
the message, mark the failure, send the events and signals).

``create_app`` sets it as ``worker_consumer``; an app of your own can too::

    app.conf.worker_consumer = "stalkflow.adapters.celery_consumer:Consumer"
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer  # type: ignore[import-untyped]

__all__ = ["WITHHELD", "Consumer"]

logger = logging.getLogger("stalkflow.celery")

#: What the logs show in place of a message body.
WITHHELD = "<body withheld: stalkflow never logs payloads>"


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Celery's consumer, with message bodies kept out of its error reports."""

    def on_unknown_task(self, body: Any, message: Any, exc: BaseException) -> None:
        # A task this worker does not have: typically a workflow module missing
        # from STALKFLOW_WORKFLOWS. Celery discards the message.
        super().on_unknown_task(WITHHELD, message, exc)

    def on_invalid_task(self, body: Any, message: Any, exc: BaseException) -> None:
        super().on_invalid_task(WITHHELD, message, exc)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        super().on_unknown_message(WITHHELD, message)

    def on_decode_error(self, message: Any, exc: BaseException) -> None:
        headers = message.headers or {}
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        logger.error(
            "Dropped a message that cannot be decoded (task %r, id %r, content type %r): %s",
            headers.get("task"),
            headers.get("id"),
            message.content_type,
            detail,
        )
        message.ack()
