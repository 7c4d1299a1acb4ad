"""Fixtures of the distributed tests: worker processes shared by a session.

See ``_cluster.py`` for how workers are started and isolated.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# Workers import ``tests.fixtures...`` from the repository root (their working
# directory); this process must name the workflows and events the same way.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.conftest import redis_test_url, require_service  # noqa: E402
from tests.integration._cluster import (  # noqa: E402
    Cluster,
    broker_test_url,
    delete_keys,
    delete_queue_keys,
    redis_ping,
    running_cluster,
    session_settings,
)

from stalkflow.engine import set_engine  # noqa: E402


@pytest.fixture(scope="session")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    """Two workers on the Redis broker: one ``--pool=solo``, one ``--pool=threads``."""
    broker_url = broker_test_url()
    redis_url = redis_test_url()
    require_service("Redis (store)", redis_ping(redis_url))
    require_service("Redis (broker)", redis_ping(broker_url))
    settings = session_settings(broker_url, redis_url)
    workers = {
        f"solo-{settings.prefix}": ["--pool=solo"],
        f"threads-{settings.prefix}": ["--pool=threads", "--concurrency=4"],
    }
    try:
        with running_cluster(settings, tmp_path_factory.mktemp("workers"), workers) as running:
            yield running
    finally:
        delete_keys(redis_url, f"{settings.prefix}*")
        delete_queue_keys(broker_url, settings.queue)


@pytest.fixture
def distributed(cluster: Cluster) -> Iterator[Cluster]:
    """``cluster``, its engine the default of this process for the test's duration."""
    set_engine(cluster.engine)
    try:
        yield cluster
    finally:
        set_engine(None)
