"""Wait strategies: how long to wait before the next attempt (``wait_*``).

A strategy maps the retry number to a delay in seconds; the retry number is 0
for the first retry (the policy passes ``attempts - 1``). Strategies add up with
``+`` (:class:`wait_combine`) and ``sum()``. Random strategies draw from
``random.Random(seed)`` when the engine passes a seed, so a replayed run
computes the same delays.
"""

from __future__ import annotations

import random
from typing import Protocol

from stalkflow.retry_policy._common import _describe, _seconds, time_unit_type


class WaitStrategy(Protocol):
    """A function giving the delay, in seconds, before the next attempt.

    ``attempts`` is 0 for the first retry: ``RetryPolicy.next`` counts failures
    from 1 and asks its wait strategy for ``attempts - 1``.
    """

    def __call__(self, attempts: int, *, seed: int | None = None) -> float: ...


def _uniform(low: float, high: float, seed: int | None) -> float:
    """Return a uniform random number in ``[low, high]``.

    With a seed, a fresh ``random.Random(seed)`` makes the value reproducible
    (replays wait the same); without one, the ``random`` module's shared
    generator is used, so ``random.seed()`` in a test still controls it.
    """
    if seed is None:
        return random.uniform(low, high)
    return random.Random(seed).uniform(low, high)


def _exponential(multiplier: float, exp_base: float, attempts: int, cap: float) -> float:
    """Return ``multiplier * exp_base ** attempts`` capped at ``cap``.

    A power too large for a float counts as "above the cap" instead of raising
    ``OverflowError``, so a policy with ``stop_never()`` keeps working forever.
    """
    try:
        value = multiplier * exp_base**attempts
    except OverflowError:
        return cap
    return min(value, cap)


class _WaitStrategyBase:
    """Base of the wait strategies: adds ``+`` (sum of delays) and ``sum()``."""

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        return _describe(self)

    def __add__(self, other: WaitStrategy) -> wait_combine:
        return wait_combine(self, other)

    def __radd__(self, other: object) -> _WaitStrategyBase:
        # ``sum()`` starts from the integer 0, which adds nothing.
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self
        if callable(other):
            return wait_combine(other, self)
        return NotImplemented


class wait_fixed(_WaitStrategyBase):
    """Wait the same ``wait`` seconds (or timedelta) before every retry."""

    def __init__(self, wait: time_unit_type) -> None:
        self.wait = _seconds(wait)

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        return self.wait


class wait_none(wait_fixed):
    """Retry at once, without any delay."""

    def __init__(self) -> None:
        super().__init__(0)


class wait_exponential(_WaitStrategyBase):
    """Wait ``multiplier * exp_base ** attempts`` seconds, clamped to ``[min, max]``.

    Exponential backoff gives an overloaded dependency time to recover while
    keeping the first retries quick. The result is never negative.
    """

    def __init__(
        self,
        multiplier: int | float = 1.0,
        exp_base: int | float = 2.0,
        max: time_unit_type = 60.0,
        min: time_unit_type = 0.0,
    ) -> None:
        self.multiplier = float(multiplier)
        self.exp_base = float(exp_base)
        self.max = _seconds(max)
        self.min = _seconds(min)

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        delay = _exponential(self.multiplier, self.exp_base, attempts, self.max)
        floor = self.min if self.min > 0.0 else 0.0
        return delay if delay > floor else floor


class wait_incrementing(_WaitStrategyBase):
    """Wait ``start + increment * attempts`` seconds, capped at ``max``, never below 0.

    Linear backoff, for when exponential growth is too aggressive.
    """

    def __init__(
        self,
        start: time_unit_type = 0.0,
        increment: time_unit_type = 100.0,
        max: time_unit_type = float("inf"),
    ) -> None:
        self.start = _seconds(start)
        self.increment = _seconds(increment)
        self.max = _seconds(max)

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        delay = self.start + self.increment * attempts
        if delay > self.max:
            delay = self.max
        return delay if delay > 0.0 else 0.0


class wait_random(_WaitStrategyBase):
    """Wait a uniformly random number of seconds in ``[min, max]``.

    Randomness spreads out retries from many clients; with a ``seed`` the value
    is reproducible, so a replayed run waits the same.
    """

    def __init__(self, min: time_unit_type = 0.0, max: time_unit_type = 1.0) -> None:
        self.min = _seconds(min)
        self.max = _seconds(max)

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        return _uniform(self.min, self.max, seed)


class wait_exponential_jitter(_WaitStrategyBase):
    """Exponential backoff plus random jitter in ``[0, jitter]``, capped at ``max``.

    The base delay is ``initial * exp_base ** attempts``; the jitter keeps
    clients that failed together from retrying together.
    """

    def __init__(
        self,
        initial: float = 1.0,
        exp_base: float = 2.0,
        max: float = 60.0,
        jitter: float = 1.0,
    ) -> None:
        self.initial = _seconds(initial)
        self.exp_base = float(exp_base)
        self.max = _seconds(max)
        self.jitter = _seconds(jitter)

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        base = _exponential(self.initial, self.exp_base, attempts, self.max)
        delay = base + _uniform(0.0, self.jitter, seed)
        return delay if delay < self.max else self.max


class wait_random_exponential(_WaitStrategyBase):
    """Full-jitter exponential backoff: a random delay up to the exponential bound.

    The upper bound is ``multiplier * exp_base ** attempts`` clamped to
    ``[min, max]``; the delay is uniform in ``[min, upper]``. This spreads
    retries the most while still backing off.
    """

    def __init__(
        self,
        multiplier: int | float = 1.0,
        exp_base: int | float = 2.0,
        max: time_unit_type = 60.0,
        min: time_unit_type = 0.0,
    ) -> None:
        self.multiplier = float(multiplier)
        self.exp_base = float(exp_base)
        self.max = _seconds(max)
        self.min = _seconds(min)

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        upper = _exponential(self.multiplier, self.exp_base, attempts, self.max)
        floor = self.min if self.min > 0.0 else 0.0
        if upper < floor:
            upper = floor
        return _uniform(self.min, upper, seed)


def wait_full_jitter(
    multiplier: int | float = 1.0,
    exp_base: int | float = 2.0,
    max: time_unit_type = 60.0,
    min: time_unit_type = 0.0,
) -> wait_random_exponential:
    """Another name for :class:`wait_random_exponential` (tenacity has both)."""
    return wait_random_exponential(multiplier=multiplier, exp_base=exp_base, max=max, min=min)


class wait_chain(_WaitStrategyBase):
    """Use ``strategies[n]`` for retry ``n`` (0 first), then keep using the last one.

    For hand-written schedules such as "1 s, then 5 s, then 30 s from then on".

    Raises:
        ValueError: if no strategy is given.
    """

    def __init__(self, *strategies: WaitStrategy) -> None:
        if not strategies:
            raise ValueError("wait_chain() needs at least one wait strategy")
        self.strategies = strategies

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        index = attempts if attempts < len(self.strategies) else len(self.strategies) - 1
        return self.strategies[index](attempts, seed=seed)


class wait_combine(_WaitStrategyBase):
    """Wait the sum of the delays of ``strategies`` (what ``a + b`` builds).

    Typically a deterministic backoff plus a random jitter.
    """

    def __init__(self, *strategies: WaitStrategy) -> None:
        self.strategies = strategies

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        total = 0.0
        for strategy in self.strategies:
            total += strategy(attempts, seed=seed)
        return total
