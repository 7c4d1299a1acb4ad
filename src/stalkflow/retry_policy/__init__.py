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

The package is laid out along those parts: :mod:`.conditions`, :mod:`.waits`,
:mod:`.stops`, and :mod:`.policy` (the protocol, :func:`retry_policy`, the legacy
constructors and the engine's helpers). Import from ``stalkflow.retry_policy``;
the submodules are an implementation detail.
"""

# ``_ComposableRetryPolicy`` is private but imported from here by name, as in
# llama-index-workflows; ``_X as _X`` marks it as a deliberate re-export.
from stalkflow.retry_policy._common import time_unit_type
from stalkflow.retry_policy.conditions import (
    RetryCondition,
    retry_all,
    retry_always,
    retry_any,
    retry_if_exception,
    retry_if_exception_cause_type,
    retry_if_exception_message,
    retry_if_exception_type,
    retry_if_not_exception_message,
    retry_if_not_exception_type,
    retry_never,
    retry_unless_exception_type,
)
from stalkflow.retry_policy.policy import (
    ConstantDelayRetryPolicy,
    ExponentialBackoffRetryPolicy,
    RetryInfo,
    RetryPolicy,
    call_policy,
    retry_policy,
    retry_seed,
)
from stalkflow.retry_policy.policy import _ComposableRetryPolicy as _ComposableRetryPolicy
from stalkflow.retry_policy.stops import (
    StopCondition,
    stop_after_attempt,
    stop_after_delay,
    stop_all,
    stop_any,
    stop_before_delay,
    stop_never,
)
from stalkflow.retry_policy.waits import (
    WaitStrategy,
    wait_chain,
    wait_combine,
    wait_exponential,
    wait_exponential_jitter,
    wait_fixed,
    wait_full_jitter,
    wait_incrementing,
    wait_none,
    wait_random,
    wait_random_exponential,
)

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
