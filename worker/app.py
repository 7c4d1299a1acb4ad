"""The Celery app that stalkflow workers run: ``celery -A worker.app worker``.

Configured from the environment when Celery imports this module:

- ``STALKFLOW_REDIS_URL``: the Redis that keeps runs and state (and the broker,
  unless ``STALKFLOW_BROKER_URL`` names another, e.g. ``amqp://...``);
- ``STALKFLOW_WORKFLOWS``: comma-separated modules to import, e.g.
  ``myapp.flows,myapp.research``; each module's ``Workflow`` instances (or, for
  a class with no instance there, the class instantiated with no arguments)
  are registered, so every one of their steps has its Celery task;
- optionally ``STALKFLOW_PREFIX``, ``STALKFLOW_QUEUE``,
  ``STALKFLOW_VISIBILITY_TIMEOUT_S``, ``STALKFLOW_LOCK_LEASE_S`` ...

Clients (web apps, scripts) must use the same Redis, broker, prefix and queue.
Steps declared with ``@step(queue="gpu")`` run only on workers that consume
that queue: ``celery -A worker.app worker -Q gpu``.
"""

from stalkflow.distributed import worker_app

app = worker_app()

__all__ = ["app"]
