"""Helpers shared by the retry conditions, wait strategies and stop conditions."""

from __future__ import annotations

from datetime import timedelta
from typing import TypeAlias

time_unit_type: TypeAlias = int | float | timedelta
"""A duration: seconds as a number, or a :class:`datetime.timedelta`."""


def _seconds(duration: time_unit_type) -> float:
    """Return ``duration`` in seconds as a float (timedeltas are converted)."""
    if isinstance(duration, timedelta):
        return duration.total_seconds()
    return float(duration)


def _describe(obj: object) -> str:
    """Render ``obj`` as ``name(attr=value, ...)`` from its public attributes, for logs."""
    fields = ", ".join(f"{k}={v!r}" for k, v in vars(obj).items() if not k.startswith("_"))
    return f"{type(obj).__name__}({fields})"
