"""Stop conditions: when to give up retrying (``stop_*``).

A condition looks at the attempts made, the time elapsed since the first one
and the delay chosen for the next one. Conditions combine with ``|``
(:class:`stop_any`) and ``&`` (:class:`stop_all`).
"""

from __future__ import annotations

from typing import Protocol

from stalkflow.retry_policy._common import _describe, _seconds, time_unit_type


class StopCondition(Protocol):
    """A predicate saying whether to stop retrying.

    ``upcoming_sleep`` is the delay the wait strategy chose for the next attempt,
    so a condition can refuse a retry that would end past a deadline.
    """

    def __call__(
        self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0
    ) -> bool: ...


class _StopConditionBase:
    """Base of the stop conditions: adds ``|`` (any) and ``&`` (all)."""

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        raise NotImplementedError

    def __repr__(self) -> str:
        return _describe(self)

    def __or__(self, other: StopCondition) -> stop_any:
        return stop_any(self, other)

    def __ror__(self, other: StopCondition) -> stop_any:
        return stop_any(other, self)

    def __and__(self, other: StopCondition) -> stop_all:
        return stop_all(self, other)

    def __rand__(self, other: StopCondition) -> stop_all:
        return stop_all(other, self)


class stop_after_attempt(_StopConditionBase):
    """Stop once ``max_attempt_number`` attempts have been made (first try included)."""

    def __init__(self, max_attempt_number: int) -> None:
        self.max_attempt_number = max_attempt_number

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        return attempts >= self.max_attempt_number


class stop_after_delay(_StopConditionBase):
    """Stop once ``max_delay`` seconds (or a timedelta) have passed since the first try."""

    def __init__(self, max_delay: time_unit_type) -> None:
        self.max_delay = _seconds(max_delay)

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        return elapsed_time >= self.max_delay


class stop_before_delay(_StopConditionBase):
    """Stop if waiting for the next attempt would reach ``max_delay`` since the first try.

    Unlike :class:`stop_after_delay` it counts the upcoming sleep, so no retry
    is scheduled to start after the deadline.
    """

    def __init__(self, max_delay: time_unit_type) -> None:
        self.max_delay = _seconds(max_delay)

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        return elapsed_time + upcoming_sleep >= self.max_delay


class stop_any(_StopConditionBase):
    """Stop when at least one of ``stops`` says so (what ``a | b`` builds)."""

    def __init__(self, *stops: StopCondition) -> None:
        self.stops = stops

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        return any(s(attempts, elapsed_time, upcoming_sleep=upcoming_sleep) for s in self.stops)


class stop_all(_StopConditionBase):
    """Stop only when every one of ``stops`` says so (what ``a & b`` builds)."""

    def __init__(self, *stops: StopCondition) -> None:
        self.stops = stops

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        return all(s(attempts, elapsed_time, upcoming_sleep=upcoming_sleep) for s in self.stops)


class stop_never(_StopConditionBase):
    """Never stop; the retry condition or the workflow timeout must end the retries."""

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        return False
