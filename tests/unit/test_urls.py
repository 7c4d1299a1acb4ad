"""Connection URLs never show their passwords in messages."""

from __future__ import annotations

import pytest

from stalkflow._urls import redact, redact_url


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("amqp://guest:s3cret@rabbit:5672//", "amqp://guest:***@rabbit:5672//"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("redis://user@cache/0", "redis://user@cache/0"),
        ("memory://", "memory://"),
    ],
)
def test_redact_url_masks_the_password_only(url: str, safe: str) -> None:
    assert redact_url(url) == safe


def test_redact_masks_a_password_wherever_it_appears() -> None:
    url = "redis://:p%40ss@cache:6379/0"

    text = redact(f"cannot reach {url}; auth p@ss failed", url)

    assert "p@ss" not in text
    assert "p%40ss" not in text
    assert "cache:6379" in text
