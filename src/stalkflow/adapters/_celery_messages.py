"""A step task's message: its task name, its ids in the run's task tree, its options.

A step's task is named ``<workflow>.<step>`` (:func:`task_name`). Flower sees
the steps of one run as one tree: the first step task's id is
:func:`root_task_id` of the run (any process can compute it), every message
carries it as Celery's ``root_id``, and a message sent while a step task
executes names that task as its ``parent_id`` (:func:`lineage`). Every other
task id is a fresh random UUID. :func:`step_message` puts it together with the
step's queue and priority, a countdown for a delay, and an ``argsrepr`` that
shows ids only, never the payload.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from typing import Any

from stalkflow.adapters.celery_steps import current_task, describe
from stalkflow.core.codec import EventCodec
from stalkflow.core.deliveries import Delivery
from stalkflow.decorators import CeleryOptions
from stalkflow.events import StartEvent

__all__ = ["Message", "lineage", "root_task_id", "step_message", "task_name"]

_ROOT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "stalkflow:run-root")


@dataclasses.dataclass(frozen=True)
class Message:
    """One step task message, ready to send: task name, body, ``send_task`` options."""

    name: str
    body: dict[str, Any]
    options: dict[str, Any]


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


def step_message(
    delivery: Delivery, delay_s: float, options: CeleryOptions, codec: EventCodec
) -> Message:
    """The message that carries ``delivery`` to its step's task, sent ``delay_s`` from now."""
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
    send.update(lineage(delivery))
    if "task_id" not in send:
        send["task_id"] = _task_id()
    body = codec.encode_delivery(delivery)
    return Message(task_name(delivery.workflow, delivery.step), body, send)


def lineage(delivery: Delivery) -> dict[str, Any]:
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
