"""Behaviour of stalkflow.retry_policy: the llama-index-workflows-compatible retry API."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import pickle
import random
import re
import warnings
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from stalkflow import retry_policy as rp
from stalkflow.retry_policy import (
    ConstantDelayRetryPolicy,
    ExponentialBackoffRetryPolicy,
    RetryInfo,
    RetryPolicy,
    call_policy,
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
    retry_policy,
    retry_seed,
    retry_unless_exception_type,
    stop_after_attempt,
    stop_after_delay,
    stop_all,
    stop_any,
    stop_before_delay,
    stop_never,
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

ERR = RuntimeError("boom")


def _legacy(factory: Callable[..., RetryPolicy], **kwargs: Any) -> RetryPolicy:
    """Build a deprecated policy without letting its warning leak into the test run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return factory(**kwargs)


# --------------------------------------------------------------------------------------
# Module surface
# --------------------------------------------------------------------------------------

UPSTREAM_PUBLIC_NAMES = {
    "ConstantDelayRetryPolicy",
    "ExponentialBackoffRetryPolicy",
    "RetryCondition",
    "RetryInfo",
    "RetryPolicy",
    "StopCondition",
    "WaitStrategy",
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
}


def test_all_lists_exactly_the_upstream_names_plus_the_engine_helpers() -> None:
    assert set(rp.__all__) == UPSTREAM_PUBLIC_NAMES | {"call_policy", "retry_seed"}
    for name in rp.__all__:
        assert hasattr(rp, name), name


def test_composable_policy_class_is_private() -> None:
    assert not hasattr(rp, "ComposableRetryPolicy")
    assert type(retry_policy()).__name__ == "_ComposableRetryPolicy"
    assert type(retry_policy()) is rp._ComposableRetryPolicy


# Parameter names in order, with defaults (inspect.Parameter.empty = required).
# Names follow tenacity 9.1.2; order and defaults follow llama-index-workflows.
_REQ = inspect.Parameter.empty
EXPECTED_SIGNATURES: list[tuple[Callable[..., object], list[tuple[str, object]]]] = [
    (wait_fixed, [("wait", _REQ)]),
    (wait_none, []),
    (wait_exponential, [("multiplier", 1), ("exp_base", 2), ("max", 60), ("min", 0)]),
    (wait_random_exponential, [("multiplier", 1), ("exp_base", 2), ("max", 60), ("min", 0)]),
    (wait_full_jitter, [("multiplier", 1), ("exp_base", 2), ("max", 60), ("min", 0)]),
    (wait_incrementing, [("start", 0), ("increment", 100), ("max", float("inf"))]),
    (wait_random, [("min", 0), ("max", 1)]),
    (wait_exponential_jitter, [("initial", 1), ("exp_base", 2), ("max", 60), ("jitter", 1)]),
    (wait_chain, [("strategies", _REQ)]),
    (wait_combine, [("strategies", _REQ)]),
    (stop_after_attempt, [("max_attempt_number", _REQ)]),
    (stop_after_delay, [("max_delay", _REQ)]),
    (stop_before_delay, [("max_delay", _REQ)]),
    (stop_any, [("stops", _REQ)]),
    (stop_all, [("stops", _REQ)]),
    (stop_never, []),
    (retry_if_exception, [("predicate", _REQ)]),
    (retry_if_exception_type, [("exception_types", Exception)]),
    (retry_if_not_exception_type, [("exception_types", Exception)]),
    (retry_unless_exception_type, [("exception_types", Exception)]),
    (retry_if_exception_cause_type, [("exception_types", Exception)]),
    (retry_if_exception_message, [("message", None), ("match", None)]),
    (retry_if_not_exception_message, [("message", None), ("match", None)]),
    (retry_any, [("retries", _REQ)]),
    (retry_all, [("retries", _REQ)]),
    (retry_always, []),
    (retry_never, []),
    (ConstantDelayRetryPolicy, [("maximum_attempts", 3), ("delay", 5)]),
    (
        ExponentialBackoffRetryPolicy,
        [
            ("maximum_attempts", 5),
            ("initial_delay", 1.0),
            ("multiplier", 2.0),
            ("max_delay", 60.0),
            ("jitter", True),
        ],
    ),
    (retry_policy, [("retry", None), ("wait", _REQ), ("stop", _REQ)]),
]


@pytest.mark.parametrize(
    ("obj", "expected"), EXPECTED_SIGNATURES, ids=[o.__name__ for o, _ in EXPECTED_SIGNATURES]
)
def test_signature_names_order_and_defaults(
    obj: Callable[..., object], expected: list[tuple[str, object]]
) -> None:
    params = list(inspect.signature(obj).parameters.values())
    assert [p.name for p in params] == [name for name, _ in expected]
    for param, (_, default) in zip(params, expected, strict=True):
        if default is not _REQ:
            assert param.default == default, param.name


def test_variadic_combinators_take_star_args() -> None:
    for obj in (wait_chain, wait_combine, stop_any, stop_all, retry_any, retry_all):
        (param,) = inspect.signature(obj).parameters.values()
        assert param.kind is inspect.Parameter.VAR_POSITIONAL, obj.__name__


# --------------------------------------------------------------------------------------
# RetryInfo and the RetryPolicy protocol
# --------------------------------------------------------------------------------------


def test_retry_info_is_a_frozen_record() -> None:
    info = RetryInfo(retry_number=2, elapsed_seconds=1.5, last_exception=ERR, last_failed_at=None)
    assert [f.name for f in dataclasses.fields(RetryInfo)] == [
        "retry_number",
        "elapsed_seconds",
        "last_exception",
        "last_failed_at",
    ]
    assert info == RetryInfo(2, 1.5, ERR, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.retry_number = 3  # type: ignore[misc]


class _NoSeedPolicy:
    """A user policy written against the old three-argument protocol."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, int, Exception]] = []

    def next(self, elapsed_time: float, attempts: int, error: Exception) -> float | None:
        self.calls.append((elapsed_time, attempts, error))
        return None if attempts >= 2 else 0.25 * attempts


class _SeedPolicy:
    def __init__(self) -> None:
        self.seeds: list[int | None] = []

    def next(
        self, elapsed_time: float, attempts: int, error: Exception, *, seed: int | None = None
    ) -> float | None:
        self.seeds.append(seed)
        return 1.0


class _KwargsPolicy:
    def __init__(self) -> None:
        self.kwargs: list[dict[str, Any]] = []

    def next(self, elapsed_time: float, attempts: int, error: Exception, **kwargs: Any) -> float:
        self.kwargs.append(kwargs)
        return 2.0


def test_protocol_isinstance_accepts_any_object_with_next() -> None:
    assert isinstance(retry_policy(), RetryPolicy)
    assert isinstance(_legacy(ConstantDelayRetryPolicy), RetryPolicy)
    assert isinstance(_NoSeedPolicy(), RetryPolicy)
    assert isinstance(_SeedPolicy(), RetryPolicy)
    assert not isinstance(object(), RetryPolicy)
    assert not isinstance(wait_fixed(1), RetryPolicy)


# --------------------------------------------------------------------------------------
# call_policy and retry_seed (engine helpers)
# --------------------------------------------------------------------------------------


def test_call_policy_works_with_a_policy_whose_next_has_no_seed() -> None:
    policy = _NoSeedPolicy()
    # Statically this is not a RetryPolicy (no ``seed``); at runtime it must still work.
    loose: Any = policy
    assert call_policy(loose, 3.5, 1, ERR, 1234) == 0.25
    assert call_policy(loose, 7.0, 2, ERR, 99) is None
    assert policy.calls == [(3.5, 1, ERR), (7.0, 2, ERR)]


def test_call_policy_passes_seed_when_next_accepts_it() -> None:
    policy = _SeedPolicy()
    assert call_policy(policy, 0.0, 1, ERR, 77) == 1.0
    assert call_policy(policy, 0.0, 1, ERR, None) == 1.0
    assert policy.seeds == [77, None]


def test_call_policy_does_not_push_seed_into_bare_kwargs() -> None:
    # Same rule as llama-index-workflows: only a parameter named ``seed`` gets it.
    policy = _KwargsPolicy()
    assert call_policy(policy, 0.0, 1, ERR, 5) == 2.0
    assert policy.kwargs == [{}]


def test_call_policy_seed_makes_random_waits_reproducible() -> None:
    policy = retry_policy(wait=wait_random(0, 100), stop=stop_never())
    first = call_policy(policy, 0.0, 1, ERR, 4242)
    assert first == call_policy(policy, 0.0, 1, ERR, 4242)
    assert first == random.Random(4242).uniform(0, 100)
    assert first != call_policy(policy, 0.0, 1, ERR, 4243)


def test_retry_seed_is_low_32_bits_of_sha256() -> None:
    for run_id, step, failures in [("run-7", "fetch", 3), ("abc", "s", 1), ("x" * 40, "y", 12)]:
        digest = hashlib.sha256(f"{run_id}:{step}:{failures}".encode()).digest()
        assert retry_seed(run_id, step, failures) == int.from_bytes(digest[-4:], "big")
    assert retry_seed("run-7", "fetch", 3) == retry_seed("run-7", "fetch", 3)
    seeds = {retry_seed("run-7", "fetch", n) for n in range(1, 50)}
    assert len(seeds) == 49
    assert all(0 <= s < 2**32 for s in seeds)
    assert retry_seed("run-7", "fetch", 1) != retry_seed("run-8", "fetch", 1)
    assert retry_seed("run-7", "fetch", 1) != retry_seed("run-7", "parse", 1)


# --------------------------------------------------------------------------------------
# retry_policy() composition
# --------------------------------------------------------------------------------------


def test_retry_policy_defaults_three_attempts_five_seconds_apart() -> None:
    policy = retry_policy()
    assert policy.next(0.0, 1, ValueError("a")) == 5.0
    assert policy.next(12.0, 2, KeyError("b")) == 5.0
    assert policy.next(0.0, 3, ERR) is None
    assert policy.next(0.0, 4, ERR) is None
    params = inspect.signature(retry_policy).parameters
    assert params["retry"].default is None
    assert isinstance(params["wait"].default, wait_fixed)
    assert params["wait"].default.wait == 5.0
    assert isinstance(params["stop"].default, stop_after_attempt)
    assert params["stop"].default.max_attempt_number == 3


def test_retry_condition_is_checked_before_anything_else() -> None:
    seen: list[object] = []

    def wait(attempts: int, *, seed: int | None = None) -> float:
        seen.append("wait")
        return 1.0

    policy = retry_policy(retry=retry_if_exception_type(OSError), wait=wait, stop=stop_never())
    assert policy.next(0.0, 1, ValueError("permanent")) is None
    assert seen == []
    assert policy.next(0.0, 1, ConnectionResetError("transient")) == 1.0
    assert seen == ["wait"]


def test_policy_hands_retry_number_seed_elapsed_and_upcoming_sleep_to_its_parts() -> None:
    calls: list[tuple[object, ...]] = []

    def wait(attempts: int, *, seed: int | None = None) -> float:
        calls.append(("wait", attempts, seed))
        return 2.5

    def stop(attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        calls.append(("stop", attempts, elapsed_time, upcoming_sleep))
        return False

    policy = retry_policy(wait=wait, stop=stop)
    assert policy.next(8.25, 4, ERR, seed=31) == 2.5
    # The wait counts retries from 0 (failure 4 is retry 3); the stop sees failures.
    assert calls == [("wait", 3, 31), ("stop", 4, 8.25, 2.5)]


def test_stop_before_delay_inside_policy_counts_the_next_sleep() -> None:
    policy = retry_policy(wait=wait_incrementing(start=2, increment=3), stop=stop_before_delay(20))
    assert policy.next(10.0, 3, ERR) == 8.0  # retry 2: 10 + 8 = 18 < 20
    assert policy.next(10.0, 4, ERR) is None  # retry 3: 10 + 11 >= 20
    assert policy.next(18.9, 1, ERR) is None  # retry 0: 18.9 + 2 >= 20


def test_first_retry_waits_the_strategys_first_delay() -> None:
    # Failures count from 1, waits from 0, so backoff starts at the multiplier.
    doubling = retry_policy(wait=wait_exponential(multiplier=1), stop=stop_after_attempt(6))
    assert [doubling.next(0.0, n, ERR) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 16.0, None]
    linear = retry_policy(wait=wait_incrementing(start=1, increment=2), stop=stop_never())
    assert [linear.next(0.0, n, ERR) for n in range(1, 5)] == [1.0, 3.0, 5.0, 7.0]


def test_wait_chain_inside_policy_starts_with_its_first_strategy() -> None:
    policy = retry_policy(
        wait=wait_chain(wait_fixed(1), wait_fixed(5), wait_fixed(30)), stop=stop_never()
    )
    assert [policy.next(0.0, n, ERR) for n in range(1, 6)] == [1.0, 5.0, 30.0, 30.0, 30.0]
    assert policy.next(0.0, 0, ERR) == 1.0  # 0 is clamped, never read as "the last one"


def test_seeded_random_waits_inside_policy_use_the_retry_number() -> None:
    policy = retry_policy(wait=wait_random_exponential(multiplier=1, max=60), stop=stop_never())
    for failures in range(1, 6):
        upper = 2.0 ** (failures - 1)
        expected = random.Random(failures).uniform(0, upper)
        assert policy.next(0.0, failures, ERR, seed=failures) == expected


def test_stop_after_delay_inside_policy_uses_elapsed_time() -> None:
    policy = retry_policy(wait=wait_fixed(0.5), stop=stop_after_delay(timedelta(seconds=30)))
    assert policy.next(29.9, 1000, ERR) == 0.5
    assert policy.next(30.0, 1, ERR) is None


def test_full_composition_with_operators() -> None:
    policy = retry_policy(
        retry=retry_if_exception_type(TimeoutError) | retry_if_exception_message(match="429"),
        wait=wait_exponential(multiplier=0.25, exp_base=4, max=10) + wait_fixed(1),
        stop=stop_after_attempt(4) | stop_after_delay(60),
    )
    assert policy.next(0.0, 1, TimeoutError()) == 1.25  # 0.25*1 + 1
    assert policy.next(0.0, 2, RuntimeError("HTTP 429 slow down")) == 2.0  # 0.25*4 + 1
    assert policy.next(0.0, 3, TimeoutError()) == 5.0  # 0.25*16 + 1
    assert policy.next(0.0, 4, TimeoutError()) is None
    assert policy.next(61.0, 1, TimeoutError()) is None
    assert policy.next(0.0, 1, RuntimeError("HTTP 500")) is None


def test_composed_policy_survives_pickling() -> None:
    policy = retry_policy(
        retry=retry_if_exception_type(ValueError) | retry_if_not_exception_message(message="x"),
        wait=wait_random_exponential(multiplier=0.5) + wait_fixed(timedelta(milliseconds=250)),
        stop=stop_after_attempt(5) & stop_before_delay(100),
    )
    clone = pickle.loads(pickle.dumps(policy))
    for attempts in range(1, 7):
        for error in (ValueError("v"), KeyError("x"), RuntimeError("x")):
            assert clone.next(99.0, attempts, error, seed=attempts) == policy.next(
                99.0, attempts, error, seed=attempts
            )


def test_repr_names_the_parts() -> None:
    text = repr(retry_policy(wait=wait_fixed(2), stop=stop_after_attempt(7)))
    assert text.startswith("_ComposableRetryPolicy(")
    assert "wait_fixed(wait=2.0)" in text
    assert "stop_after_attempt(max_attempt_number=7)" in text


# --------------------------------------------------------------------------------------
# Retry conditions
# --------------------------------------------------------------------------------------


def test_retry_if_exception_uses_the_predicate() -> None:
    cond = retry_if_exception(lambda e: isinstance(e, OSError) and e.errno == 11)
    again = OSError(11, "try again")
    assert cond(again) is True
    assert cond(OSError(2, "missing")) is False
    assert cond(ValueError()) is False


def test_retry_if_exception_type_matches_subclasses_and_tuples() -> None:
    cond = retry_if_exception_type((LookupError, TimeoutError))
    assert cond(KeyError("k")) is True
    assert cond(IndexError()) is True
    assert cond(TimeoutError()) is True
    assert cond(ValueError()) is False
    assert isinstance(cond, retry_if_exception)


def test_retry_if_exception_type_default_is_exception_only() -> None:
    cond = retry_if_exception_type()
    assert cond(ValueError()) is True
    assert cond(KeyboardInterrupt()) is False


@pytest.mark.parametrize("factory", [retry_if_not_exception_type, retry_unless_exception_type])
def test_retry_if_not_exception_type_excludes_given_types(
    factory: Callable[..., Callable[[BaseException], bool]],
) -> None:
    cond = factory(exception_types=(PermissionError, ArithmeticError))
    assert cond(PermissionError()) is False
    assert cond(ZeroDivisionError()) is False
    assert cond(ConnectionError()) is True
    assert factory()(ValueError()) is False  # default excludes every Exception
    assert factory()(GeneratorExit()) is True


def test_retry_unless_exception_type_is_the_tenacity_alias() -> None:
    assert issubclass(retry_unless_exception_type, retry_if_not_exception_type)


def test_retry_if_exception_message_exact_text() -> None:
    cond = retry_if_exception_message(message="server busy")
    assert cond(RuntimeError("server busy")) is True
    assert cond(RuntimeError("server busy!")) is False
    assert cond(RuntimeError("the server busy")) is False


def test_retry_if_exception_message_regex_searches_anywhere() -> None:
    cond = retry_if_exception_message(match=r"status=5\d\d")
    assert cond(RuntimeError("request failed: status=503 (unavailable)")) is True
    assert cond(RuntimeError("request failed: status=404")) is False
    compiled = retry_if_exception_message(match=re.compile(r"^retry", re.IGNORECASE))
    assert compiled(RuntimeError("RETRY later")) is True
    assert compiled(RuntimeError("please retry")) is False


@pytest.mark.parametrize("factory", [retry_if_exception_message, retry_if_not_exception_message])
def test_message_conditions_need_exactly_one_of_message_or_match(
    factory: Callable[..., object],
) -> None:
    with pytest.raises(TypeError, match=r"'message' or 'match'") as missing:
        factory()
    assert factory.__name__ in str(missing.value)
    with pytest.raises(TypeError, match=r"either 'message' or 'match', not both"):
        factory(message="a", match="a")


def test_retry_if_not_exception_message_negates() -> None:
    exact = retry_if_not_exception_message(message="invalid api key")
    assert exact(RuntimeError("invalid api key")) is False
    assert exact(RuntimeError("timeout")) is True
    pattern = retry_if_not_exception_message(match="quota|forbidden")
    assert pattern(RuntimeError("403 forbidden")) is False
    assert pattern(RuntimeError("502 bad gateway")) is True


def test_retry_if_exception_cause_type_walks_the_explicit_cause_chain() -> None:
    cond = retry_if_exception_cause_type(ConnectionError)

    root = ConnectionRefusedError("refused")
    middle = OSError("io")
    middle.__cause__ = root
    top = RuntimeError("wrapper")
    top.__cause__ = middle
    assert cond(top) is True

    # The error itself is not its own cause.
    assert cond(ConnectionError("direct")) is False

    # Implicit chaining (__context__) is not followed.
    implicit = RuntimeError("implicit")
    implicit.__context__ = ConnectionError("ctx")
    assert cond(implicit) is False


def test_retry_if_exception_cause_type_stops_on_a_cause_cycle() -> None:
    a, b = ValueError("a"), KeyError("b")
    a.__cause__ = b
    b.__cause__ = a
    assert retry_if_exception_cause_type(TimeoutError)(a) is False
    assert retry_if_exception_cause_type(KeyError)(a) is True


def test_retry_any_and_retry_all() -> None:
    is_value = retry_if_exception_type(ValueError)
    says_retry = retry_if_exception_message(match="retry")
    any_of = retry_any(is_value, says_retry)
    all_of = retry_all(is_value, says_retry)
    cases = {
        ValueError("retry"): (True, True),
        ValueError("nope"): (True, False),
        KeyError("retry"): (True, False),
        KeyError("nope"): (False, False),
    }
    for error, (expect_any, expect_all) in cases.items():
        assert any_of(error) is expect_any, error
        assert all_of(error) is expect_all, error
    assert retry_any()(ERR) is False
    assert retry_all()(ERR) is True


def test_retry_operators_build_any_and_all() -> None:
    is_value = retry_if_exception_type(ValueError)
    is_key = retry_if_exception_type(KeyError)
    either = is_value | is_key
    both = is_value & retry_if_exception_message(message="x")
    assert isinstance(either, retry_any)
    assert isinstance(both, retry_all)
    assert either(KeyError()) is True
    assert either(TypeError()) is False
    assert both(ValueError("x")) is True
    assert both(ValueError("y")) is False


def test_retry_operators_accept_plain_callables_on_either_side() -> None:
    def says_slow(error: BaseException) -> bool:
        return "slow" in str(error)

    left = says_slow | retry_if_exception_type(KeyError)
    right = retry_if_exception_type(KeyError) & says_slow
    assert isinstance(left, retry_any)
    assert left(RuntimeError("slow")) is True
    assert left(KeyError("fast")) is True
    assert left(RuntimeError("fast")) is False
    assert right(KeyError("slow")) is True
    assert right(KeyError("fast")) is False
    assert (says_slow & retry_always())(RuntimeError("slow")) is True


def test_retry_always_and_never() -> None:
    assert retry_always()(ERR) is True
    assert retry_never()(ERR) is False
    assert (retry_never() | retry_always())(ERR) is True
    assert (retry_never() & retry_always())(ERR) is False
    policy = retry_policy(retry=retry_never(), stop=stop_never())
    assert policy.next(0.0, 1, ERR) is None


# --------------------------------------------------------------------------------------
# Wait strategies
# --------------------------------------------------------------------------------------


def test_wait_fixed_and_none() -> None:
    assert wait_fixed(7)(1) == 7.0
    assert wait_fixed(7)(50) == 7.0
    assert wait_fixed(timedelta(minutes=1, milliseconds=500))(3) == 60.5
    assert isinstance(wait_fixed(7)(1), float)
    assert wait_none()(9) == 0.0


def test_wait_exponential_defaults_double_from_one_up_to_sixty() -> None:
    wait = wait_exponential()
    assert [wait(n) for n in range(8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]


def test_wait_exponential_clamps_between_min_and_max() -> None:
    wait = wait_exponential(multiplier=0.1, exp_base=3, max=timedelta(seconds=5), min=0.5)
    assert wait(0) == 0.5  # 0.1 raised to the floor
    assert wait(2) == pytest.approx(0.9)
    assert wait(3) == pytest.approx(2.7)
    assert wait(4) == 5.0  # 8.1 capped
    assert wait_exponential(multiplier=-1, min=-3)(0) == 0.0  # never negative


def test_exponential_waits_do_not_overflow_on_huge_attempt_counts() -> None:
    assert wait_exponential(max=30)(5000) == 30.0
    assert wait_exponential_jitter(max=30, jitter=0)(5000) == 30.0
    assert 0.0 <= wait_random_exponential(max=30)(5000, seed=1) <= 30.0


def test_wait_incrementing() -> None:
    assert [wait_incrementing()(n) for n in range(3)] == [0.0, 100.0, 200.0]
    wait = wait_incrementing(start=timedelta(seconds=2), increment=1.5, max=6)
    assert [wait(n) for n in range(5)] == [2.0, 3.5, 5.0, 6.0, 6.0]
    falling = wait_incrementing(start=3, increment=-2)
    assert [falling(n) for n in range(4)] == [3.0, 1.0, 0.0, 0.0]


def test_wait_random_stays_in_range_and_seed_uses_random_Random() -> None:
    wait = wait_random(min=2, max=4)
    assert all(2.0 <= wait(1) <= 4.0 for _ in range(200))
    for seed in (0, 1, 2**31, 123456789):
        assert wait(1, seed=seed) == random.Random(seed).uniform(2, 4)
    assert wait(1, seed=5) != wait(1, seed=6)
    assert wait_random(timedelta(seconds=10), timedelta(seconds=10))(0) == 10.0


def test_unseeded_random_waits_use_the_random_module_state() -> None:
    wait = wait_random(0, 1000)
    state = random.getstate()
    try:
        random.seed(2024)
        first = wait(1)
        random.seed(2024)
        assert wait(1) == first
    finally:
        random.setstate(state)


def test_wait_exponential_jitter() -> None:
    flat = wait_exponential_jitter(initial=0.5, exp_base=3, max=20, jitter=0)
    assert [flat(n) for n in range(5)] == [0.5, 1.5, 4.5, 13.5, 20.0]

    wait = wait_exponential_jitter(initial=1, exp_base=2, max=100, jitter=3)
    for attempts in range(5):
        expected = 2.0**attempts + random.Random(attempts + 10).uniform(0, 3)
        assert wait(attempts, seed=attempts + 10) == expected

    capped = wait_exponential_jitter(initial=9, exp_base=1, max=10, jitter=5)
    assert all(capped(1, seed=s) <= 10.0 for s in range(50))
    assert any(capped(1, seed=s) == 10.0 for s in range(50))


def test_wait_exponential_jitter_defaults() -> None:
    wait = wait_exponential_jitter()
    for attempts in range(7):
        base = min(2.0**attempts, 60.0)
        value = wait(attempts, seed=attempts)
        assert base <= value <= min(base + 1.0, 60.0)


def test_wait_random_exponential_is_uniform_up_to_the_exponential_bound() -> None:
    wait = wait_random_exponential(multiplier=0.5, exp_base=2, max=10, min=0)
    for attempts in range(8):
        upper = min(0.5 * 2**attempts, 10)
        assert wait(attempts, seed=99) == random.Random(99).uniform(0, upper)


def test_wait_random_exponential_respects_min() -> None:
    wait = wait_random_exponential(multiplier=1, exp_base=2, max=50, min=timedelta(seconds=3))
    assert wait(0, seed=1) == 3.0  # bound 1 < min, so the range collapses to [3, 3]
    assert all(3.0 <= wait(4, seed=s) <= 16.0 for s in range(100))


def test_wait_full_jitter_is_wait_random_exponential() -> None:
    alias = wait_full_jitter(multiplier=2, exp_base=3, max=40, min=1)
    direct = wait_random_exponential(multiplier=2, exp_base=3, max=40, min=1)
    assert isinstance(alias, wait_random_exponential)
    for attempts in range(6):
        assert alias(attempts, seed=attempts) == direct(attempts, seed=attempts)


def test_wait_chain_indexes_by_attempts_and_repeats_the_last() -> None:
    wait = wait_chain(wait_fixed(3), wait_fixed(7), wait_incrementing(start=0, increment=10))
    assert [wait(n) for n in range(5)] == [3.0, 7.0, 20.0, 30.0, 40.0]
    with pytest.raises(ValueError, match="at least one"):
        wait_chain()


def test_wait_chain_forwards_the_seed() -> None:
    wait = wait_chain(wait_fixed(1), wait_random(0, 10))
    assert wait(3, seed=8) == random.Random(8).uniform(0, 10)


def test_wait_combine_plus_and_sum_add_delays() -> None:
    parts = [wait_fixed(1.25), wait_incrementing(start=1, increment=2), wait_none()]
    combined = wait_combine(*parts)
    assert combined(3) == 1.25 + 7.0
    plus = parts[0] + parts[1] + parts[2]
    assert isinstance(plus, wait_combine)
    assert plus(3) == combined(3)
    summed: Any = sum(parts)
    assert summed(3) == combined(3)
    single = wait_fixed(4)
    assert sum([single]) is single  # 0 + wait is the wait itself
    assert wait_combine()(5) == 0.0


def test_wait_addition_accepts_plain_callables() -> None:
    def two(attempts: int, *, seed: int | None = None) -> float:
        return 2.0

    left: Any = two + wait_fixed(1)
    right = wait_fixed(1) + two
    assert left(0) == 3.0
    assert right(0) == 3.0
    with pytest.raises(TypeError):
        _ = "x" + wait_fixed(1)


def test_wait_combine_forwards_the_seed_to_every_part() -> None:
    combined = wait_random(0, 1) + wait_random_exponential(multiplier=1, max=8)
    expected = random.Random(17).uniform(0, 1) + random.Random(17).uniform(0, 8)
    assert combined(3, seed=17) == expected


# --------------------------------------------------------------------------------------
# Stop conditions
# --------------------------------------------------------------------------------------


def test_stop_after_attempt_counts_attempts() -> None:
    stop = stop_after_attempt(4)
    assert [stop(n, 0.0) for n in range(1, 6)] == [False, False, False, True, True]


def test_stop_after_delay_ignores_upcoming_sleep() -> None:
    stop = stop_after_delay(timedelta(minutes=2))
    assert stop(1, 119.9) is False
    assert stop(1, 119.9, upcoming_sleep=1000.0) is False
    assert stop(1, 120.0) is True


def test_stop_before_delay_counts_upcoming_sleep() -> None:
    stop = stop_before_delay(12)
    assert stop(1, 5.0, upcoming_sleep=6.9) is False
    assert stop(1, 5.0, upcoming_sleep=7.0) is True
    assert stop(1, 12.0) is True


def test_stop_any_all_and_operators() -> None:
    by_count = stop_after_attempt(3)
    by_time = stop_after_delay(10)
    table = [((3, 1.0), True, False), ((1, 10.0), True, False), ((3, 10.0), True, True)]
    table.append(((1, 1.0), False, False))
    for (attempts, elapsed), expect_any, expect_all in table:
        assert stop_any(by_count, by_time)(attempts, elapsed) is expect_any
        assert (by_count | by_time)(attempts, elapsed) is expect_any
        assert stop_all(by_count, by_time)(attempts, elapsed) is expect_all
        assert (by_count & by_time)(attempts, elapsed) is expect_all
    assert isinstance(by_count | by_time, stop_any)
    assert isinstance(by_count & by_time, stop_all)


def test_stop_combinators_forward_upcoming_sleep() -> None:
    stop = stop_never() | stop_before_delay(10)
    assert stop(1, 4.0, upcoming_sleep=5.0) is False
    assert stop(1, 4.0, upcoming_sleep=6.0) is True
    assert stop_all(stop_before_delay(10))(1, 4.0, upcoming_sleep=6.0) is True


def test_stop_operators_accept_plain_callables() -> None:
    def after_five(attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        return attempts >= 5

    combined = after_five | stop_after_delay(10)
    assert isinstance(combined, stop_any)
    assert combined(5, 0.0) is True
    assert combined(1, 0.0) is False


def test_stop_never() -> None:
    assert stop_never()(10**6, 10.0**9, upcoming_sleep=10.0**9) is False


# --------------------------------------------------------------------------------------
# Legacy constructors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "factory", [ConstantDelayRetryPolicy, ExponentialBackoffRetryPolicy], ids=lambda f: f.__name__
)
def test_legacy_constructors_warn_at_the_caller(factory: Callable[..., RetryPolicy]) -> None:
    with pytest.warns(DeprecationWarning, match=f"{factory.__name__} is deprecated") as record:
        policy = factory()
    assert record[0].filename == __file__
    assert type(policy).__name__ == "_ComposableRetryPolicy"


def test_legacy_constructors_warn_with_the_upstream_text() -> None:
    with pytest.warns(DeprecationWarning) as record:
        ConstantDelayRetryPolicy()
        ExponentialBackoffRetryPolicy()
    assert [str(w.message) for w in record] == [
        "ConstantDelayRetryPolicy is deprecated, use "
        "retry_policy(wait=wait_fixed(delay), stop=stop_after_attempt(n)) instead",
        "ExponentialBackoffRetryPolicy is deprecated, use "
        "retry_policy(wait=wait_exponential(...), stop=stop_after_attempt(n)) instead",
    ]


def test_constant_delay_defaults() -> None:
    policy = _legacy(ConstantDelayRetryPolicy)
    assert policy.next(0.0, 1, ERR) == 5.0
    assert policy.next(0.0, 2, ERR) == 5.0
    assert policy.next(0.0, 3, ERR) is None


def test_constant_delay_custom() -> None:
    policy = _legacy(ConstantDelayRetryPolicy, maximum_attempts=6, delay=0.75)
    assert [policy.next(100.0, n, ERR) for n in range(1, 8)] == [0.75] * 5 + [None, None]


def test_exponential_backoff_without_jitter() -> None:
    policy = _legacy(
        ExponentialBackoffRetryPolicy,
        maximum_attempts=7,
        initial_delay=0.5,
        multiplier=3.0,
        max_delay=30.0,
        jitter=False,
    )
    # attempts 0 (a direct caller) and 1 both ask for retry 0.
    assert [policy.next(0.0, n, ERR) for n in range(9)] == [
        0.5,
        0.5,
        1.5,
        4.5,
        13.5,
        30.0,
        30.0,
        None,
        None,
    ]


def test_exponential_backoff_defaults_stop_after_five_attempts() -> None:
    policy = _legacy(ExponentialBackoffRetryPolicy, jitter=False)
    assert [policy.next(0.0, n, ERR) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, None, None]


def test_exponential_backoff_with_jitter_is_full_jitter() -> None:
    policy = _legacy(ExponentialBackoffRetryPolicy, initial_delay=2.0, multiplier=2.0, max_delay=9)
    for attempts in range(1, 5):
        seed = retry_seed("run", "step", attempts)
        upper = min(2.0 * 2.0 ** (attempts - 1), 9.0)
        delay = policy.next(0.0, attempts, ERR, seed=seed)
        assert delay == random.Random(seed).uniform(0, upper)
        assert delay == policy.next(0.0, attempts, ERR, seed=seed)
    assert policy.next(0.0, 5, ERR, seed=1) is None
