"""Retry policies for workflow steps.

A step decorated with ``@step(retry_policy=...)`` asks its policy, after every
failure, whether to run again and after how long. The API mirrors
``workflows.retry_policy`` from llama-index-workflows 2.x name for name, so code
written for it works after changing the import. Policies are usually built with
:func:`retry_policy` from three orthogonal, tenacity-style parts:

* a *retry condition* (``retry_if_*``), which decides if an error is retryable;
* a *wait strategy* (``wait_*``), which gives the delay before the next attempt;
* a *stop condition* (``stop_*``), which decides when to give up.

Conditions combine with ``|`` and ``&``, waits with ``+`` (and ``sum()``).
Parameter names and types follow tenacity 9.1.2; positional order and defaults
follow llama-index-workflows, which is what user code was written against.
Random waits draw from ``random.Random(seed)`` when the engine passes a seed,
so a replayed run computes the same delays.
"""

from __future__ import annotations

import hashlib
import inspect
import random
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeAlias, runtime_checkable

__all__ = [
    "ConstantDelayRetryPolicy",
    "ExponentialBackoffRetryPolicy",
    "RetryCondition",
    "RetryInfo",
    "RetryPolicy",
    "StopCondition",
    "WaitStrategy",
    "call_policy",
    "retry_all",
    "retry_always",
    "retry_any",
    "retry_if_exception",
    "retry_if_exception_cause_type",
    "retry_if_exception_message",
    "retry_if_exception_type",
    "retry_if_not_exception_message",
    "retry_if_not_exception_type",
    "retry_never",
    "retry_policy",
    "retry_seed",
    "retry_unless_exception_type",
    "stop_after_attempt",
    "stop_after_delay",
    "stop_all",
    "stop_any",
    "stop_before_delay",
    "stop_never",
    "time_unit_type",
    "wait_chain",
    "wait_combine",
    "wait_exponential",
    "wait_exponential_jitter",
    "wait_fixed",
    "wait_full_jitter",
    "wait_incrementing",
    "wait_none",
    "wait_random",
    "wait_random_exponential",
]

time_unit_type: TypeAlias = int | float | timedelta
"""A duration: seconds as a number, or a :class:`datetime.timedelta`."""

_ExceptionTypes: TypeAlias = "type[BaseException] | tuple[type[BaseException], ...]"


def _seconds(duration: time_unit_type) -> float:
    """Return ``duration`` in seconds as a float (timedeltas are converted)."""
    if isinstance(duration, timedelta):
        return duration.total_seconds()
    return float(duration)


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


def _describe(obj: object) -> str:
    """Render ``obj`` as ``name(attr=value, ...)`` from its public attributes, for logs."""
    fields = ", ".join(f"{k}={v!r}" for k, v in vars(obj).items() if not k.startswith("_"))
    return f"{type(obj).__name__}({fields})"


# --------------------------------------------------------------------------------------
# Protocols and records
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryInfo:
    """The retry state of the step attempt that is running now.

    ``Context.retry_info()`` returns it so a step can adapt to being retried
    (for example, use a fallback model on the second try). On the first attempt
    ``retry_number`` is 0, ``elapsed_seconds`` is 0.0 and the last two fields are
    None; on a retry they describe the most recent earlier failure.

    Attributes:
        retry_number: 0 on the first attempt, 1 on the first retry, and so on.
        elapsed_seconds: Seconds since the first attempt started.
        last_exception: The exception of the previous failed attempt, or None.
            Its traceback may be missing when it was restored from stored state.
        last_failed_at: When the previous attempt failed (timezone-aware UTC),
            or None.
    """

    retry_number: int
    elapsed_seconds: float
    last_exception: Exception | None
    last_failed_at: datetime | None


@runtime_checkable
class RetryPolicy(Protocol):
    """What a step retry policy is: any object with a compatible ``next`` method.

    Policies from :func:`retry_policy` and the legacy constructors satisfy it, and
    so do user-written classes. A user class may leave out the ``seed`` keyword;
    the engine passes it only to ``next`` methods that accept it (see
    :func:`call_policy`).
    """

    def next(
        self,
        elapsed_time: float,
        attempts: int,
        error: Exception,
        *,
        seed: int | None = None,
    ) -> float | None:
        """Decide whether to retry after a failure, and how long to wait first.

        Args:
            elapsed_time: Seconds from the first attempt to this failure.
            attempts: Attempts made so far, this failed one included (1 on the
                first failure).
            error: The exception the step raised.
            seed: A deterministic seed for random delays, so a replayed run
                waits the same; None means "use fresh randomness".

        Returns:
            Seconds to wait before the next attempt, or None to give up.
        """


class RetryCondition(Protocol):
    """A predicate saying whether an exception should be retried."""

    def __call__(self, error: BaseException) -> bool: ...


class WaitStrategy(Protocol):
    """A function giving the delay, in seconds, before the next attempt."""

    def __call__(self, attempts: int, *, seed: int | None = None) -> float: ...


class StopCondition(Protocol):
    """A predicate saying whether to stop retrying.

    ``upcoming_sleep`` is the delay the wait strategy chose for the next attempt,
    so a condition can refuse a retry that would end past a deadline.
    """

    def __call__(
        self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0
    ) -> bool: ...


# --------------------------------------------------------------------------------------
# Operator support
# --------------------------------------------------------------------------------------


class _RetryConditionBase:
    """Base of the retry conditions: adds ``|`` (any) and ``&`` (all)."""

    def __call__(self, error: BaseException) -> bool:
        raise NotImplementedError

    def __repr__(self) -> str:
        return _describe(self)

    def __or__(self, other: RetryCondition) -> retry_any:
        return retry_any(self, other)

    def __ror__(self, other: RetryCondition) -> retry_any:
        return retry_any(other, self)

    def __and__(self, other: RetryCondition) -> retry_all:
        return retry_all(self, other)

    def __rand__(self, other: RetryCondition) -> retry_all:
        return retry_all(other, self)


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


# --------------------------------------------------------------------------------------
# Retry conditions
# --------------------------------------------------------------------------------------


class _IsInstance:
    """Picklable ``isinstance`` predicate (a lambda would not survive pickling)."""

    def __init__(self, exception_types: _ExceptionTypes, negate: bool) -> None:
        self.exception_types = exception_types
        self.negate = negate

    def __call__(self, error: BaseException) -> bool:
        return isinstance(error, self.exception_types) != self.negate

    def __repr__(self) -> str:
        return _describe(self)


class retry_if_exception(_RetryConditionBase):
    """Retry when ``predicate(error)`` is true.

    For decisions the other conditions cannot express, e.g.
    ``retry_if_exception(lambda e: "rate limit" in str(e).lower())``.
    """

    def __init__(self, predicate: Callable[[BaseException], bool]) -> None:
        self.predicate = predicate

    def __call__(self, error: BaseException) -> bool:
        return bool(self.predicate(error))


class retry_if_exception_type(retry_if_exception):
    """Retry only errors that are instances of ``exception_types`` (subclasses too).

    The usual choice for transient failures, e.g.
    ``retry_if_exception_type((TimeoutError, ConnectionError))``.
    """

    def __init__(
        self,
        exception_types: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    ) -> None:
        self.exception_types = exception_types
        super().__init__(_IsInstance(exception_types, negate=False))


class retry_if_not_exception_type(retry_if_exception):
    """Retry every error except instances of ``exception_types``.

    For when most failures are transient but a few are known to be permanent,
    e.g. ``retry_if_not_exception_type((ValueError, PermissionError))``.
    """

    def __init__(
        self,
        exception_types: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    ) -> None:
        self.exception_types = exception_types
        super().__init__(_IsInstance(exception_types, negate=True))


class retry_unless_exception_type(retry_if_not_exception_type):
    """Tenacity's name for :class:`retry_if_not_exception_type`; same behaviour."""


class retry_if_exception_message(_RetryConditionBase):
    """Retry when the error's ``str()`` equals ``message`` or contains ``match``.

    Give exactly one of them: ``message`` is compared for equality, ``match`` is
    a regular expression (string or compiled) searched anywhere in the message.
    Useful when a provider signals transient failures only through the text.

    Raises:
        TypeError: if neither or both of ``message`` and ``match`` are given.
    """

    def __init__(
        self,
        message: str | None = None,
        match: str | re.Pattern[str] | None = None,
    ) -> None:
        name = type(self).__name__
        if message is None and match is None:
            raise TypeError(f"{name}() missing 1 required argument 'message' or 'match'")
        if message is not None and match is not None:
            raise TypeError(f"{name}() takes either 'message' or 'match', not both")
        self.message = message
        self.match = match
        self._pattern: re.Pattern[str] | None = re.compile(match) if match is not None else None

    def _matches(self, error: BaseException) -> bool:
        text = str(error)
        if self._pattern is not None:
            return self._pattern.search(text) is not None
        return text == self.message

    def __call__(self, error: BaseException) -> bool:
        return self._matches(error)


class retry_if_not_exception_message(retry_if_exception_message):
    """Retry unless the error's message equals ``message`` or contains ``match``.

    For providers whose messages mark permanent failures, e.g.
    ``retry_if_not_exception_message(match="invalid_api_key|permission denied")``.
    """

    def __call__(self, error: BaseException) -> bool:
        return not self._matches(error)


class retry_if_exception_cause_type(_RetryConditionBase):
    """Retry when an exception in the error's ``__cause__`` chain has a given type.

    Follows only explicit chaining (``raise X from Y``), as tenacity does; the
    error itself and implicit ``__context__`` links are not inspected. Useful
    when a library wraps a transient low-level error in its own exception type.
    """

    def __init__(
        self,
        exception_types: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    ) -> None:
        self.exception_types = exception_types

    def __call__(self, error: BaseException) -> bool:
        seen: set[int] = set()
        cause = error.__cause__
        while cause is not None and id(cause) not in seen:
            if isinstance(cause, self.exception_types):
                return True
            seen.add(id(cause))
            cause = cause.__cause__
        return False


class retry_any(_RetryConditionBase):
    """Retry when at least one of ``retries`` says so (what ``a | b`` builds)."""

    def __init__(self, *retries: RetryCondition) -> None:
        self.retries = retries

    def __call__(self, error: BaseException) -> bool:
        return any(condition(error) for condition in self.retries)


class retry_all(_RetryConditionBase):
    """Retry only when every one of ``retries`` says so (what ``a & b`` builds)."""

    def __init__(self, *retries: RetryCondition) -> None:
        self.retries = retries

    def __call__(self, error: BaseException) -> bool:
        return all(condition(error) for condition in self.retries)


class retry_always(_RetryConditionBase):
    """Retry every error; states the intent explicitly in a composed policy."""

    def __call__(self, error: BaseException) -> bool:
        return True


class retry_never(_RetryConditionBase):
    """Retry no error; handy in tests or to switch off one branch of an ``|``."""

    def __call__(self, error: BaseException) -> bool:
        return False


# --------------------------------------------------------------------------------------
# Wait strategies
# --------------------------------------------------------------------------------------


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
    """Use ``strategies[attempts]`` for each attempt, then keep using the last one.

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


# --------------------------------------------------------------------------------------
# Stop conditions
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Policies
# --------------------------------------------------------------------------------------


# Shared default parts: every one of them is stateless, so sharing is safe.
_DEFAULT_WAIT = wait_fixed(5)
_DEFAULT_STOP = stop_after_attempt(3)


class _ComposableRetryPolicy:
    """A :class:`RetryPolicy` made of a retry condition, a wait and a stop condition.

    Private on purpose (llama-index-workflows made it so); build it with
    :func:`retry_policy`.
    """

    def __init__(
        self,
        retry: RetryCondition | None = None,
        wait: WaitStrategy = _DEFAULT_WAIT,
        stop: StopCondition = _DEFAULT_STOP,
    ) -> None:
        self.retry = retry
        self.wait = wait
        self.stop = stop

    def next(
        self,
        elapsed_time: float,
        attempts: int,
        error: Exception,
        *,
        seed: int | None = None,
    ) -> float | None:
        """Return the delay before the next attempt, or None to give up.

        None when the retry condition rejects ``error``; otherwise the wait
        strategy's delay, unless the stop condition (told that delay as
        ``upcoming_sleep``) says to stop.
        """
        if self.retry is not None and not self.retry(error):
            return None
        delay = self.wait(attempts, seed=seed)
        if self.stop(attempts, elapsed_time, upcoming_sleep=delay):
            return None
        return delay

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(retry={self.retry!r}, wait={self.wait!r}, stop={self.stop!r})"
        )


def retry_policy(
    retry: RetryCondition | None = None,
    wait: WaitStrategy = _DEFAULT_WAIT,
    stop: StopCondition = _DEFAULT_STOP,
) -> RetryPolicy:
    """Build a step retry policy from a retry condition, a wait and a stop condition.

    This is the recommended way to say how a step is retried::

        retry_policy(
            retry=retry_if_exception_type((TimeoutError, ConnectionError)),
            wait=wait_exponential(multiplier=1, exp_base=2, max=30),
            stop=stop_after_attempt(5),
        )

    With no arguments every error is retried, 5 seconds apart, for 3 attempts
    in total.

    Args:
        retry: Which errors to retry; None retries every error.
        wait: The delay before each retry; default ``wait_fixed(5)``.
        stop: When to give up; default ``stop_after_attempt(3)``.

    Returns:
        A policy to pass as ``@step(retry_policy=...)``.
    """
    return _ComposableRetryPolicy(retry=retry, wait=wait, stop=stop)


def ConstantDelayRetryPolicy(maximum_attempts: int = 3, delay: float = 5) -> RetryPolicy:
    """Deprecated: retry every ``delay`` seconds, up to ``maximum_attempts`` attempts.

    Kept so older code keeps working; it warns with ``DeprecationWarning``. Use
    ``retry_policy(wait=wait_fixed(delay), stop=stop_after_attempt(n))``.
    """
    warnings.warn(
        "ConstantDelayRetryPolicy is deprecated; use "
        "retry_policy(wait=wait_fixed(delay), stop=stop_after_attempt(n)) instead",
        DeprecationWarning,
        stacklevel=2,
    )
    return _ComposableRetryPolicy(wait=wait_fixed(delay), stop=stop_after_attempt(maximum_attempts))


def ExponentialBackoffRetryPolicy(
    maximum_attempts: int = 5,
    initial_delay: float = 1.0,
    multiplier: float = 2.0,
    max_delay: float = 60.0,
    jitter: bool = True,
) -> RetryPolicy:
    """Deprecated: exponential backoff ``initial_delay * multiplier ** attempts``.

    The delay is capped at ``max_delay``; with ``jitter`` it is drawn uniformly
    between 0 and that value (:class:`wait_random_exponential`), otherwise it is
    exactly that value (:class:`wait_exponential`). Kept so older code keeps
    working; it warns with ``DeprecationWarning``. Use
    ``retry_policy(wait=wait_exponential(...), stop=stop_after_attempt(n))``.
    """
    warnings.warn(
        "ExponentialBackoffRetryPolicy is deprecated; use "
        "retry_policy(wait=wait_exponential(...), stop=stop_after_attempt(n)) instead",
        DeprecationWarning,
        stacklevel=2,
    )
    wait: WaitStrategy
    if jitter:
        wait = wait_random_exponential(multiplier=initial_delay, exp_base=multiplier, max=max_delay)
    else:
        wait = wait_exponential(multiplier=initial_delay, exp_base=multiplier, max=max_delay)
    return _ComposableRetryPolicy(wait=wait, stop=stop_after_attempt(maximum_attempts))


# --------------------------------------------------------------------------------------
# Engine helpers (stalkflow-specific)
# --------------------------------------------------------------------------------------


def _accepts_seed(method: Callable[..., object]) -> bool:
    """Tell whether ``method`` can be called with a ``seed=`` keyword argument."""
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False
    parameter = parameters.get("seed")
    return parameter is not None and parameter.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


def call_policy(
    policy: RetryPolicy,
    elapsed_time: float,
    attempts: int,
    error: Exception,
    seed: int | None,
) -> float | None:
    """Ask ``policy`` for the delay before the next attempt (None: give up).

    ``seed`` is passed only when ``policy.next`` has a ``seed`` parameter, so
    user policies written with just ``next(elapsed_time, attempts, error)`` keep
    working, as they do in llama-index-workflows.
    """
    if _accepts_seed(policy.next):
        return policy.next(elapsed_time, attempts, error, seed=seed)
    return policy.next(elapsed_time, attempts, error)


def retry_seed(run_id: str, step: str, failures: int) -> int:
    """Return the jitter seed for the ``failures``-th failure of ``step`` in ``run_id``.

    It is the low 32 bits of ``sha256("{run_id}:{step}:{failures}")``, the same
    value llama-index-workflows computes, so a given run, step and failure
    count always produce the same random delay, whichever worker computes it.
    """
    digest = hashlib.sha256(f"{run_id}:{step}:{failures}".encode()).hexdigest()
    return int(digest, 16) & 0xFFFF_FFFF
