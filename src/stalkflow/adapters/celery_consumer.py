"""The consumer of stalkflow's Celery workers: it never logs a message's body.

Celery's own consumer logs the full body of a message it cannot handle (a
task this worker does not have, an invalid or undecodable message). A
stalkflow message's body is the delivery with its event payload, and DESIGN §7
says logs show run id, step, event type and attempt only: this consumer logs
the task name, id and headers (whose ``argsrepr`` is the safe description)
with the body withheld, and otherwise does what Celery's does (reject or ack
the message, mark the failure, send the events and signals).

A message for a task this worker does not have is a step of a workflow it
does not serve (its module is missing from ``STALKFLOW_WORKFLOWS``): Celery
discards such a message, so the run could never go on. This consumer also fails
that run with :class:`~stalkflow.errors.WorkflowNotServedError`, naming the
workflow and the worker, so that its caller learns why instead of waiting for the
run's timeout.

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
        try:
            fail_unserved_run(message, str(getattr(self, "hostname", "") or "this worker"))
        except Exception as error:  # reporting must never stop the consumer
            logger.warning("Could not fail the run of an unserved task: %s", error)

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


def fail_unserved_run(message: Any, worker: str) -> bool:
    """Fail the run of a message whose task this worker does not have.

    Only a stalkflow delivery (a JSON body whose one argument names a run, a
    workflow and a step) is acted on, through this process's engine; anything
    else is left to Celery's discarding. Returns whether a run was failed.
    """
    from stalkflow._sync import run_blocking
    from stalkflow.engine import get_engine
    from stalkflow.errors import WorkflowNotServedError

    try:
        args = message.payload[0]
        fields = args[0]
        run_id, workflow, step = fields["run_id"], fields["workflow"], fields["step"]
    except Exception:
        return False
    if not all(isinstance(value, str) and value for value in (run_id, workflow, step)):
        return False
    error = WorkflowNotServedError(
        f"Worker {worker} received step {step!r} of workflow {workflow!r}, which it does not "
        "serve: add the workflow's module to its STALKFLOW_WORKFLOWS (or route the step's "
        "queue to workers that have it)",
        name=workflow,
    )
    engine = get_engine()
    failed = run_blocking(lambda: engine.fail(run_id, error, step=step))
    if failed:
        logger.error("Failed run %s: %s", run_id, error)
    return failed
