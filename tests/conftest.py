"""Test-wide helpers: the rule for tests that need an external service.

A test that needs Redis (or a broker, or a worker) asks ``require_service``
first. Locally an unreachable service skips the test, so that ``pytest`` works on
a laptop with nothing running; in CI (the environment variable ``CI`` is
``"true"``) it fails the test, because a service missing there is a broken
pipeline, never a reason to pass silently.

    def test_something(require_service):
        require_service("Redis", lambda: redis.Redis.from_url(url).ping())

Modules that cannot take the fixture (a plain helper) call
:func:`require_service` directly.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

#: The Redis that tests use; a database of its own, since tests delete their keys.
DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/15"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def redis_test_url() -> str:
    """The Redis URL tests run against: ``STALKFLOW_TEST_REDIS_URL`` or the default."""
    return os.environ.get("STALKFLOW_TEST_REDIS_URL") or DEFAULT_TEST_REDIS_URL


def require_service(name: str, check: Callable[[], object]) -> None:
    """Skip the test (locally) or fail it (in CI) unless ``check()`` succeeds.

    ``check`` succeeds when it returns anything but ``False`` without raising;
    what it raised or returned is quoted in the skip or failure message.
    """
    try:
        outcome = check()
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
    else:
        if outcome is not False:
            return
        problem = "the check returned False"
    message = f"{name} is unreachable ({problem})"
    if in_ci():
        pytest.fail(f"{message}; CI=true, so a missing service is a failure", pytrace=False)
    pytest.skip(message)


@pytest.fixture(name="require_service")
def require_service_fixture() -> Callable[[str, Callable[[], object]], None]:
    """:func:`require_service`, for tests and fixtures in any directory."""
    return require_service


@pytest.fixture(name="redis_test_url")
def redis_test_url_fixture() -> str:
    """:func:`redis_test_url`, read when a test asks for it (never at import)."""
    return redis_test_url()
