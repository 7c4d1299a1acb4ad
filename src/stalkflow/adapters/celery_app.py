"""The Celery app of stalkflow's step tasks: the worker and delivery settings of DESIGN §6.

``create_app(broker_url)`` is what :class:`~stalkflow.adapters.celery_transport.CeleryTransport`
sends with when it is given no app of its own: late acknowledgement, requeue
when a worker process is lost, prefetch 1, JSON only, results ignored, and a
visibility timeout (Redis broker) longer than the longest step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import celery  # type: ignore[import-untyped]

__all__ = [
    "CeleryApp",
    "app_settings",
    "broker_transport_options",
    "create_app",
    "install_safe_inspection",
]

#: The type of the Celery application a transport sends with (celery is untyped).
CeleryApp: TypeAlias = celery.Celery

#: How sending a message retries while the broker is unreachable (Celery's policy).
PUBLISH_RETRY_POLICY: Mapping[str, float] = {
    "max_retries": 4,
    "interval_start": 0.0,
    "interval_step": 0.5,
    "interval_max": 1.0,
}


def broker_transport_options(visibility_timeout_s: float) -> dict[str, Any]:
    """The Redis broker's redelivery: after ``visibility_timeout_s``, swept promptly.

    kombu returns an unacknowledged message (its worker died) to the queue once
    it is older than the visibility timeout, but its periodic sweep runs only
    every ``unacked_restore_interval * unacked_restore_throttle`` seconds (100
    by default): sweep every tenth of the timeout (1 to 10 s) instead. Other
    brokers ignore these options.
    """
    return {
        "visibility_timeout": visibility_timeout_s,
        "unacked_restore_interval": max(1, min(10, int(visibility_timeout_s // 10))),
        "unacked_restore_throttle": 1,
    }


def app_settings(
    broker_url: str | None, *, queue: str, visibility_timeout_s: float
) -> dict[str, Any]:
    """The Celery configuration of DESIGN §6 for an app stalkflow creates."""
    settings: dict[str, Any] = {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "accept_content": ["json"],
        "task_serializer": "json",
        "result_serializer": "json",
        "task_ignore_result": True,
        "task_default_queue": queue,
        "broker_transport_options": broker_transport_options(visibility_timeout_s),
        "broker_connection_retry_on_startup": True,
        "task_publish_retry_policy": dict(PUBLISH_RETRY_POLICY),
        # logs a message it cannot handle without its body (the event payload)
        "worker_consumer": "stalkflow.adapters.celery_consumer:Consumer",
    }
    if broker_url is not None:
        settings["broker_url"] = broker_url
    return settings


def create_app(
    broker_url: str,
    *,
    queue: str = "stalkflow",
    visibility_timeout_s: float = 3600.0,
    main: str = "stalkflow",
) -> CeleryApp:
    """A Celery app configured for stalkflow's step tasks (DESIGN §6)."""
    app = celery.Celery(main, set_as_current=False)
    app.conf.update(
        app_settings(broker_url, queue=queue, visibility_timeout_s=visibility_timeout_s)
    )
    install_safe_inspection()
    return app


_installed = False


def install_safe_inspection() -> None:
    """Make ``celery inspect active/reserved/scheduled/query_task`` show ``argsrepr``.

    Celery's own commands answer with a task's raw arguments unless asked for
    ``safe=True``, and Flower's worker pages ask without: a stalkflow message's
    argument is the delivery, with its event payload. These replacements (for
    every task of this process's workers) always answer with the task's
    ``argsrepr``/``kwargsrepr``: run id, step, event type and attempt. Idempotent.
    """
    global _installed
    if _installed:
        return
    from celery.utils.functional import maybe_list  # type: ignore[import-untyped]
    from celery.worker import control  # type: ignore[import-untyped]
    from celery.worker import state as worker_state
    from celery.worker.request import Request  # type: ignore[import-untyped]

    @control.inspect_command(alias="dump_active")  # type: ignore[untyped-decorator]
    def active(state: Any, safe: bool = True, **kwargs: Any) -> list[Any]:
        """List of tasks currently being executed (arguments as argsrepr)."""
        return [request.info(safe=True) for request in state.tset(worker_state.active_requests)]

    @control.inspect_command(alias="dump_reserved")  # type: ignore[untyped-decorator]
    def reserved(state: Any, **kwargs: Any) -> list[Any]:
        """List of currently reserved tasks, not including scheduled/active."""
        waiting = state.tset(worker_state.reserved_requests) - state.tset(
            worker_state.active_requests
        )
        return [request.info(safe=True) for request in waiting]

    @control.inspect_command(alias="dump_schedule")  # type: ignore[untyped-decorator]
    def scheduled(state: Any, **kwargs: Any) -> list[Any]:
        """List of currently scheduled ETA/countdown tasks."""
        found = []
        for waiting in state.consumer.timer.schedule.queue:
            try:
                request = waiting.entry.args[0]
            except (IndexError, TypeError, AttributeError):
                continue
            if isinstance(request, Request):
                found.append(
                    {
                        "eta": request.eta.isoformat() if request.eta else None,
                        "priority": waiting.priority,
                        "request": request.info(safe=True),
                    }
                )
        return found

    @control.inspect_command(  # type: ignore[untyped-decorator]
        variadic="ids", signature="[id1 [id2 [... [idN]]]]"
    )
    def query_task(state: Any, ids: Any, **kwargs: Any) -> dict[str, Any]:
        """Query for task information by id."""
        return {
            request.id: (control._state_of_task(request), request.info(safe=True))
            for request in control._find_requests_by_id(maybe_list(ids))
        }

    _installed = True
