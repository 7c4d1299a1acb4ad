"""Fixtures of the CLI tests: worker processes serving ``tests.cli.cli_flows``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# The CLI and the workers import ``tests.cli.cli_flows`` from the repository root.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.cli._harness import Workers, running_workers  # noqa: E402
from tests.conftest import redis_test_url, require_service  # noqa: E402
from tests.integration._cluster import broker_test_url, redis_ping, session_settings  # noqa: E402


@pytest.fixture(scope="session")
def cli_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    """One ``--pool=threads`` worker on the Redis broker, serving the CLI test workflows."""
    broker_url, redis_url = broker_test_url(), redis_test_url()
    require_service("Redis (store)", redis_ping(redis_url))
    require_service("Redis (broker)", redis_ping(broker_url))
    settings = session_settings(broker_url, redis_url)
    workers = {f"cli-{settings.prefix}": ["--pool=threads", "--concurrency=4"]}
    with running_workers(settings, tmp_path_factory.mktemp("cli-workers"), workers) as running:
        yield running
