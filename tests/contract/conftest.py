"""Fixtures that run each contract suite against every adapter of its port.

``store`` is parametrized over the ``Store`` adapters and ``transport`` over the
``Transport`` adapters, so a new adapter joins a suite by adding its name to
``STORE_ADAPTERS`` / ``TRANSPORT_ADAPTERS`` and a branch that builds it below.
An adapter whose module does not exist yet is skipped with that reason; a
service it needs (Redis) that is unreachable skips locally and fails in CI (see
``require_service`` in ``tests/conftest.py``).

A test that holds only for some adapters (behaviour an adapter documents
beyond its port) says so with ``@pytest.mark.only_adapters("local", reason=...)``;
it is skipped, with that reason, for the others.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from stalkflow.core.deliveries import Delivery
from stalkflow.events import Event, StartEvent
from stalkflow.ports import DeliveryPolicy, Store, Transport

STORE_ADAPTERS = ["memory", "redis"]
TRANSPORT_ADAPTERS = ["local", "celery"]

#: The workflow and steps that the deliveries of the contract suites name. No
#: ``Workflow`` class defines them: the ports carry deliveries, not workflows.
CONTRACT_WORKFLOW = "contract"
CONTRACT_STEPS = ("a", "b")

DEFAULT_TEST_BROKER_URL = "redis://127.0.0.1:6379/14"

REPO_ROOT = Path(__file__).resolve().parents[2]
# The suites import their shared helpers as ``tests.contract._runs``.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "only_adapters(*names, reason): the test checks behaviour specific to these adapters "
        "(documented by the adapter, not promised by its port); skipped for the others",
    )


# --- helpers -----------------------------------------------------------------------


def _skip_unless_applies(request: pytest.FixtureRequest, adapter: str) -> None:
    marker = request.node.get_closest_marker("only_adapters")
    if marker is not None and adapter not in marker.args:
        names = ", ".join(marker.args)
        reason = marker.kwargs.get("reason", "")
        pytest.skip(f"specific to the {names} adapter(s), not a port promise: {reason}")


def _import_adapter(module_name: str) -> ModuleType:
    """The adapter's module, or a skip if it has not been written yet.

    Only the module itself missing skips; a module that exists but fails to
    import (a missing dependency, a syntax error) is an error, never hidden.
    """
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        pytest.skip(f"{module_name} does not exist yet")


def _redis_ping(url: str) -> Callable[[], object]:
    def check() -> object:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            return client.ping()
        finally:
            client.close()

    return check


def _delete_keys(url: str, pattern: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=pattern, count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _safe(url: str) -> str:
    """``url`` without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    return f"{scheme}{sep}***@{rest.rpartition('@')[2]}"


# --- the store ---------------------------------------------------------------------


@pytest.fixture
def store_policy() -> DeliveryPolicy | None:
    """The delivery policy of the ``store`` fixture's stores; ``None``: the default.

    A suite that needs other leases or start limits (deadlines that pass within
    a test) overrides this fixture in its module.
    """
    return None


@pytest.fixture(params=STORE_ADAPTERS)
async def store(
    request: pytest.FixtureRequest,
    require_service: Callable[[str, Callable[[], object]], None],
    redis_test_url: str,
    store_policy: DeliveryPolicy | None,
) -> AsyncIterator[Store]:
    """A fresh, empty ``Store`` of each adapter; nothing is shared between tests.

    ``"memory"``: ``MemoryStore(policy)``, ``policy`` being ``store_policy``.

    ``"redis"``: what ``stalkflow.adapters.redis_store`` must provide:

    - ``RedisStore.from_url(url, prefix=prefix, policy=policy)`` builds a store
      on the Redis at ``url`` (``STALKFLOW_TEST_REDIS_URL``, default
      ``redis://127.0.0.1:6379/15``) that writes only keys starting with
      ``prefix`` (here unique per test, ``stalkflow-test:<hex>:``), so tests
      never see each other's runs, states, locks or streams, and ``list_runs``
      lists only this prefix's runs; ``policy`` (``store_policy``, ``None`` for
      the default) sets its leases and start limit;
    - ``await store.aclose()`` releases its connections; the fixture then
      deletes every key under the prefix;
    - its synchronous ``collect`` may be called from any thread, also from
      inside a running event loop (the suite calls it both ways);
    - it round-trips the events and event classes the suites use (built-in
      events and module-level ``Event`` subclasses of the suites and of
      ``_runs``, already imported when decoded) inside deliveries, waiters, buffers,
      results and stream entries, and ``Delivery``/``Waiter``/``RunRecord``
      values come back equal (``==``) to what was stored.
    """
    adapter = request.param
    _skip_unless_applies(request, adapter)
    if adapter == "memory":
        from stalkflow.adapters.memory_store import MemoryStore

        yield MemoryStore(store_policy)
        return
    if adapter == "redis":
        module = _import_adapter("stalkflow.adapters.redis_store")
        url = redis_test_url
        require_service(f"Redis at {_safe(url)}", _redis_ping(url))
        prefix = f"stalkflow-test:{uuid.uuid4().hex}:"
        redis_store = module.RedisStore.from_url(url, prefix=prefix, policy=store_policy)
        try:
            yield redis_store
        finally:
            try:
                await redis_store.aclose()
            finally:
                _delete_keys(url, f"{prefix}*")
        return
    raise AssertionError(f"no store adapter named {adapter!r}")


# --- the transport -----------------------------------------------------------------


@pytest.fixture(params=TRANSPORT_ADAPTERS)
async def transport(
    request: pytest.FixtureRequest,
    require_service: Callable[[str, Callable[[], object]], None],
) -> AsyncIterator[Transport]:
    """A fresh ``Transport`` of each adapter, not yet started (tests call ``start``).

    ``"local"``: ``LocalTransport()``.

    ``"celery"``: what ``stalkflow.adapters.celery_transport`` must provide:

    - ``CeleryTransport.from_url(broker_url, queue=queue)`` builds a transport
      whose Celery app (``transport.app``) talks to the broker at
      ``STALKFLOW_TEST_BROKER_URL`` (default ``redis://127.0.0.1:6379/14``) and
      sends step tasks that have no queue of their own to ``queue`` (unique per
      test, so a message left over by one test never reaches another's worker);
    - ``transport.register_step(workflow, step)`` registers the task of one step
      (named ``"<workflow>.<step>"``) before the worker starts; the suite
      registers ``CONTRACT_WORKFLOW`` x ``CONTRACT_STEPS``;
    - a worker started in this process with
      ``celery.contrib.testing.worker.start_worker(transport.app, pool="threads",
      concurrency=4, perform_ping_check=False, queues=[queue])`` executes each
      delivery by awaiting the executor given to ``start()`` (on the worker's
      own event loop, so the executor is called from another thread);
    - the suite's deliveries carry built-in events only (``StartEvent`` with
      dynamic fields), so the transport needs no knowledge of test classes;
    - ``close()`` (or ``await aclose()``), if it has one, is called at teardown;
      the fixture then deletes the broker's keys that name ``queue``.

    Tasks registered at run time must not be Celery "shared" tasks
    (``app.task(..., shared=False)``): with the default ``shared=True`` the first
    transport's task, bound to its executor, is copied into every app created
    after it, and a later test's worker calls the earlier test's executor.
    """
    adapter = request.param
    _skip_unless_applies(request, adapter)
    if adapter == "local":
        from stalkflow.adapters.local_transport import LocalTransport

        yield LocalTransport()
        return
    if adapter == "celery":
        module = _import_adapter("stalkflow.adapters.celery_transport")
        url = os.environ.get("STALKFLOW_TEST_BROKER_URL") or DEFAULT_TEST_BROKER_URL
        require_service(f"the Celery broker at {_safe(url)}", _redis_ping(url))
        queue = f"stalkflow-test-{uuid.uuid4().hex}"
        celery_transport = module.CeleryTransport.from_url(url, queue=queue)
        for step in CONTRACT_STEPS:
            celery_transport.register_step(CONTRACT_WORKFLOW, step)
        try:
            with _celery_worker(celery_transport.app, queue):
                yield celery_transport
        finally:
            try:
                await _close(celery_transport)
            finally:
                _delete_keys(url, f"*{queue}*")  # the queue and kombu's bindings of it
        return
    raise AssertionError(f"no transport adapter named {adapter!r}")


@contextlib.contextmanager
def _celery_worker(app: Any, queue: str) -> Iterator[None]:
    from celery.contrib.testing.worker import start_worker

    with start_worker(app, pool="threads", concurrency=4, perform_ping_check=False, queues=[queue]):
        yield


async def _close(adapter: Any) -> None:
    if hasattr(adapter, "aclose"):
        await adapter.aclose()
    elif hasattr(adapter, "close"):
        adapter.close()


# --- values ------------------------------------------------------------------------


@pytest.fixture
def make_delivery() -> Callable[..., Delivery]:
    """Build a delivery of the contract workflow: ``make_delivery(run_id, "a", event)``.

    The id defaults to a fresh random one; any other ``Delivery`` field may be
    given by keyword.
    """

    def build(
        run_id: str,
        step: str = CONTRACT_STEPS[0],
        event: Event | None = None,
        delivery_id: str | None = None,
        **fields: Any,
    ) -> Delivery:
        delivery = Delivery(
            run_id=run_id,
            workflow=CONTRACT_WORKFLOW,
            step=step,
            event=event if event is not None else StartEvent(),
            delivery_id=delivery_id or f"d-{uuid.uuid4().hex[:12]}",
        )
        return dataclasses.replace(delivery, **fields) if fields else delivery

    return build
