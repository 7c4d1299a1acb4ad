"""The raw Celery baselines: what a user would write with plain Celery tasks.

Same broker settings as stalkflow's step tasks (``app_settings`` of
``stalkflow.adapters.celery_app``: acks_late, reject_on_worker_lost, prefetch 1,
JSON only, results ignored, the same visibility timeout) and the same task
options, but none of stalkflow's code runs in the tasks:

- ``bench.raw_hop`` publishes the next hop and returns; the last hop pushes to a
  Redis list the client waits on.
- ``bench.raw_fan`` sends ``count`` ``bench.raw_work`` messages; each sleeps
  (``time.sleep``: a Celery task is a blocking function) and sends one
  ``bench.raw_gather``, which counts in Redis (``INCR``); the last one pushes to
  the list. The I/O fan-out of ``iobound.py`` with the same messages: one per
  handled item and one per gathered result.

Workers run ``celery -A benchmarks.raw_celery worker`` with the environment
below; the benchmark sends with :func:`make_app` configured the same way.
"""

from __future__ import annotations

import os
import time
from typing import Any

import celery
import redis

from stalkflow.adapters.celery_app import app_settings
from stalkflow.adapters.celery_transport import STEP_TASK_OPTIONS

__all__ = ["FAN_TASK", "HOP_TASK", "app", "make_app"]

#: The task's name; it takes (hops left, the Redis list to push to at the end).
HOP_TASK = "bench.raw_hop"
#: The I/O fan-out's first task; it takes (count, seconds each sleeps, the Redis list).
FAN_TASK = "bench.raw_fan"

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

    @app.task(name=FAN_TASK, shared=False, **STEP_TASK_OPTIONS)
    def raw_fan(count: int, sleep_s: float, done_key: str) -> None:
        for _ in range(count):
            raw_work.apply_async((count, sleep_s, done_key))

    @app.task(name="bench.raw_work", shared=False, **STEP_TASK_OPTIONS)
    def raw_work(count: int, sleep_s: float, done_key: str) -> None:
        time.sleep(sleep_s)
        raw_gather.apply_async((count, done_key))

    @app.task(name="bench.raw_gather", shared=False, **STEP_TASK_OPTIONS)
    def raw_gather(count: int, done_key: str) -> None:
        if _client().incr(f"{done_key}:gathered") == count:
            _done(done_key)

    return app


def _client() -> redis.Redis:
    global _done_client
    if _done_client is None:
        _done_client = redis.Redis.from_url(os.environ[DONE_URL_ENV])
    return _done_client


def _done(done_key: str) -> None:
    _client().rpush(done_key, "1")


app = make_app(
    os.environ.get(BROKER_ENV, "redis://127.0.0.1:6379/12"),
    os.environ.get(QUEUE_ENV, "bench-raw"),
    float(os.environ.get(VISIBILITY_ENV, "3600")),
)
