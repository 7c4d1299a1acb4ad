"""The raw Celery baseline: one task that re-enqueues itself, nothing else.

Same broker settings as stalkflow's step tasks (``app_settings`` of
``stalkflow.adapters.celery_app``: acks_late, reject_on_worker_lost, prefetch 1,
JSON only, results ignored, the same visibility timeout) and the same task
options, but none of stalkflow's code runs in the task: it publishes the next
hop and returns. The last hop pushes to a Redis list the client waits on.

Workers run ``celery -A benchmarks.raw_celery worker`` with the environment
below; the benchmark sends with :func:`make_app` configured the same way.
"""

from __future__ import annotations

import os
from typing import Any

import celery
import redis

from stalkflow.adapters.celery_app import app_settings
from stalkflow.adapters.celery_transport import STEP_TASK_OPTIONS

__all__ = ["HOP_TASK", "app", "make_app"]

#: The task's name; it takes (hops left, the Redis list to push to at the end).
HOP_TASK = "bench.raw_hop"

BROKER_ENV = "BENCH_RAW_BROKER_URL"
QUEUE_ENV = "BENCH_RAW_QUEUE"
DONE_URL_ENV = "BENCH_RAW_DONE_URL"
VISIBILITY_ENV = "BENCH_RAW_VISIBILITY_TIMEOUT_S"

_done_client: redis.Redis | None = None


def make_app(broker_url: str, queue: str, visibility_timeout_s: float) -> celery.Celery:
    """A Celery app with stalkflow's delivery settings and the hop task."""
    app = celery.Celery("bench_raw", set_as_current=False)
    settings = app_settings(broker_url, queue=queue, visibility_timeout_s=visibility_timeout_s)
    settings.pop("worker_consumer")  # stalkflow's log-redacting consumer: not raw Celery
    app.conf.update(settings)

    @app.task(name=HOP_TASK, bind=True, shared=False, **STEP_TASK_OPTIONS)
    def raw_hop(self: Any, left: int, done_key: str) -> None:
        if left <= 0:
            _done(done_key)
            return
        self.apply_async((left - 1, done_key))

    return app


def _done(done_key: str) -> None:
    global _done_client
    if _done_client is None:
        _done_client = redis.Redis.from_url(os.environ[DONE_URL_ENV])
    _done_client.rpush(done_key, "1")


app = make_app(
    os.environ.get(BROKER_ENV, "redis://127.0.0.1:6379/12"),
    os.environ.get(QUEUE_ENV, "bench-raw"),
    float(os.environ.get(VISIBILITY_ENV, "3600")),
)
