"""Retry policies: what the engine asks after a failure, and how policies are built.

:class:`RetryPolicy` is the protocol the engine calls; :func:`retry_policy`
builds one from a retry condition, a wait strategy and a stop condition. The
module also holds the legacy constructors and the engine's helpers
(:func:`call_policy`, :func:`retry_seed`).
"""

from __future__ import annotations

import hashlib
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from stalkflow.retry_policy.conditions import RetryCondition
from stalkflow.retry_policy.stops import StopCondition, stop_after_attempt
from stalkflow.retry_policy.waits import (
    WaitStrategy,
    wait_exponential,
    wait_fixed,
    wait_random_exponential,
)


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

        ``attempts`` counts failures from 1 but wait strategies count retries
        from 0, so the wait is asked for retry ``attempts - 1``: with
        ``wait_exponential(multiplier=1)`` the first retry waits 1 s, then 2 s,
        4 s... (llama-index-workflows 2.26 does the same). The stop condition
        still sees ``attempts``. A caller passing 0 gets retry 0, not -1, which
        ``wait_chain`` would read as its last strategy.
        """
        if self.retry is not None and not self.retry(error):
            return None
        delay = self.wait(max(attempts - 1, 0), seed=seed)
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
        "ConstantDelayRetryPolicy is deprecated, use "
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
    """Deprecated: exponential backoff ``initial_delay * multiplier ** retry``.

    The delay is capped at ``max_delay``; with ``jitter`` it is drawn uniformly
    between 0 and that value (:class:`wait_random_exponential`), otherwise it is
    exactly that value (:class:`wait_exponential`). ``retry`` counts from 0, so
    the delays are ``initial_delay``, ``initial_delay * multiplier``, and so on.
    Kept so older code keeps working; it warns with ``DeprecationWarning``. Use
    ``retry_policy(wait=wait_exponential(...), stop=stop_after_attempt(n))``.
    """
    warnings.warn(
        "ExponentialBackoffRetryPolicy is deprecated, use "
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
