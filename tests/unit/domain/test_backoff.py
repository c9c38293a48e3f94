"""Retry policies: validation paths, defaults, backoff bounds and jitter, and the retry decision."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.domain.backoff import (
    HANDED_BACK,
    LEASE_EXPIRED,
    MAX_BACKOFF,
    RetryDefaults,
    RetryPolicy,
    backoff_ceiling,
    backoff_delay,
    decide_lease_expiry,
    decide_retry,
    resolve_retry_policy,
    validate_retry_policy,
)
from baton.errors import FieldViolation

DEFAULTS = RetryDefaults(max_attempts=3, initial_backoff=1.0, backoff_coefficient=2.0, max_backoff=300.0)

policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(min_value=1, max_value=1000),
    initial_backoff=st.floats(min_value=0, max_value=86_400),
    backoff_coefficient=st.floats(min_value=1, max_value=100),
    max_backoff=st.floats(min_value=0, max_value=MAX_BACKOFF),
    jitter=st.floats(min_value=0, max_value=1),
).filter(lambda p: p.max_backoff >= p.initial_backoff)
attempts = st.integers(min_value=1, max_value=10**30)
unit = st.floats(min_value=0, max_value=1, exclude_max=True)


def policy(**fields: object) -> RetryPolicy:
    base = {"max_attempts": 5, "initial_backoff": 1.0, "backoff_coefficient": 2.0, "max_backoff": 60.0}
    return RetryPolicy(**{**base, **fields})  # type: ignore[arg-type]


def test_unset_fields_take_the_defaults() -> None:
    assert resolve_retry_policy(None, DEFAULTS) == RetryPolicy(3, 1.0, 2.0, 300.0, 0.0, frozenset())
    given_policy = RetryPolicy(max_attempts=7, jitter=0.5, non_retryable_error_types=frozenset({"Fatal"}))
    assert resolve_retry_policy(given_policy, DEFAULTS) == RetryPolicy(7, 1.0, 2.0, 300.0, 0.5, frozenset({"Fatal"}))
    # An unset max_backoff never falls below the policy's own initial_backoff.
    assert resolve_retry_policy(RetryPolicy(initial_backoff=600.0), DEFAULTS).max_backoff == 600.0


def test_a_valid_policy_has_no_violations() -> None:
    assert validate_retry_policy(RetryPolicy(), DEFAULTS) == []
    assert validate_retry_policy(policy(jitter=1.0, non_retryable_error_types=frozenset({"A"})), DEFAULTS) == []


def test_every_bad_field_is_named() -> None:
    bad = RetryPolicy(
        max_attempts=1001,
        initial_backoff=-1.0,
        backoff_coefficient=0.5,
        max_backoff=8 * 86_400.0,
        jitter=1.5,
        non_retryable_error_types=frozenset({"", "x" * 129}),
    )
    fields = [v.field for v in validate_retry_policy(bad, DEFAULTS, "handler.steps[2].retry_policy")]
    prefix = "handler.steps[2].retry_policy."
    assert fields == [
        prefix + "max_attempts",
        prefix + "initial_backoff",
        prefix + "backoff_coefficient",
        prefix + "max_backoff",
        prefix + "jitter",
        prefix + "non_retryable_error_types",
        prefix + "non_retryable_error_types",
    ]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"max_attempts": -1}, "max_attempts"),
        ({"initial_backoff": 86_401.0}, "initial_backoff"),
        ({"initial_backoff": math.nan}, "initial_backoff"),
        ({"backoff_coefficient": 101.0}, "backoff_coefficient"),
        ({"max_backoff": math.inf}, "max_backoff"),
        ({"jitter": -0.1}, "jitter"),
        ({"jitter": math.nan}, "jitter"),
    ],
)
def test_out_of_range_values(fields: dict[str, float], field: str) -> None:
    (violation,) = validate_retry_policy(RetryPolicy(**fields), DEFAULTS)  # type: ignore[arg-type]
    assert violation.field == f"retry_policy.{field}"


def test_max_backoff_below_initial_is_refused_even_against_a_default() -> None:
    assert validate_retry_policy(RetryPolicy(initial_backoff=10.0, max_backoff=5.0), DEFAULTS) == [
        FieldViolation("retry_policy.max_backoff", "must be at least initial_backoff (10 s), got 5")
    ]
    (violation,) = validate_retry_policy(RetryPolicy(max_backoff=0.5), DEFAULTS)
    assert violation.description == "must be at least initial_backoff (1 s), got 0.5"


def test_error_type_count_is_limited() -> None:
    many = frozenset(f"E{i}" for i in range(65))
    (violation,) = validate_retry_policy(RetryPolicy(non_retryable_error_types=many), DEFAULTS)
    assert violation == FieldViolation("retry_policy.non_retryable_error_types", "at most 64 error types")


def test_exponential_growth_capped() -> None:
    p = policy()
    assert [backoff_ceiling(p, n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff_ceiling(policy(backoff_coefficient=1.0), 50) == 1.0
    assert backoff_ceiling(policy(initial_backoff=0.0), 5) == 0.0
    with pytest.raises(ValueError, match="from 1"):
        backoff_ceiling(p, 0)


def test_no_jitter_is_exact_and_full_jitter_spans_the_range() -> None:
    assert backoff_delay(policy(), 3, rand=lambda: 0.9) == 4.0
    full = policy(jitter=1.0)
    assert backoff_delay(full, 3, rand=lambda: 0.0) == 0.0
    assert backoff_delay(full, 3, rand=lambda: 0.5) == 2.0
    assert backoff_delay(full, 3, rand=lambda: 1.0) == 4.0
    half = policy(jitter=0.5)
    assert backoff_delay(half, 3, rand=lambda: 0.0) == 2.0
    assert backoff_delay(half, 3, rand=lambda: 1.0) == 4.0


@settings(deadline=None)
@given(policies, attempts, unit)
def test_delay_is_within_zero_and_max_backoff(p: RetryPolicy, attempt: int, draw: float) -> None:
    ceiling = backoff_ceiling(p, attempt)
    delay = backoff_delay(p, attempt, rand=lambda: draw)
    assert 0.0 <= delay <= ceiling <= p.max_backoff
    assert delay >= ceiling * (1 - p.jitter) - 1e-9 * max(ceiling, 1.0)


@settings(deadline=None)
@given(policies, attempts, st.integers(min_value=0, max_value=10**6))
def test_the_upper_bound_never_decreases(p: RetryPolicy, attempt: int, more: int) -> None:
    assert backoff_ceiling(p, attempt) <= backoff_ceiling(p, attempt + more)


@settings(deadline=None)
@given(st.integers(min_value=1, max_value=10**400))
def test_huge_attempt_numbers_do_not_overflow(attempt: int) -> None:
    p = policy(backoff_coefficient=100.0, max_backoff=MAX_BACKOFF, jitter=1.0)
    assert 0.0 <= backoff_delay(p, attempt) <= MAX_BACKOFF
    slow = policy(backoff_coefficient=1.000001, max_backoff=MAX_BACKOFF)
    assert 1.0 <= backoff_ceiling(slow, attempt) <= MAX_BACKOFF


def test_full_jitter_covers_the_range() -> None:
    generator = random.Random(7)
    p = policy(jitter=1.0)
    delays = [backoff_delay(p, 4, rand=generator.random) for _ in range(2000)]
    assert min(delays) < 0.1
    assert max(delays) > 7.9
    assert all(0.0 <= d <= 8.0 for d in delays)
    buckets = [sum(1 for d in delays if k <= d < k + 1) for k in range(8)]
    assert min(buckets) > 150  # roughly uniform: 250 expected per bucket


def test_retry_with_backoff() -> None:
    decision = decide_retry(policy(), 2, error_type="Timeout", retryable=True, rand=lambda: 0.5)
    assert decision.retry
    assert decision.delay == 2.0
    assert decision.reason == "retrying in 2.000 s (attempt 3 of 5)"


def test_retry_after_wins_only_when_longer() -> None:
    p = policy()
    assert decide_retry(p, 1, error_type="E", retryable=True, retry_after=30.0).delay == 30.0
    assert decide_retry(p, 4, error_type="E", retryable=True, retry_after=3.0).delay == 8.0
    assert decide_retry(p, 1, error_type="E", retryable=True, retry_after=1e12).delay == MAX_BACKOFF
    for ignored in (math.nan, math.inf, -5.0, None):
        assert decide_retry(p, 1, error_type="E", retryable=True, retry_after=ignored).delay == 1.0


def test_non_retryable_errors_fail_at_once() -> None:
    p = policy(non_retryable_error_types=frozenset({"ValidationError"}))
    by_flag = decide_retry(p, 1, error_type="Timeout", retryable=False)
    by_type = decide_retry(p, 1, error_type="ValidationError", retryable=True)
    assert (by_flag.retry, by_flag.delay, by_flag.reason) == (False, 0.0, "the error is not retryable")
    assert (by_type.retry, by_type.reason) == (False, "error type 'ValidationError' is not retryable")


@settings(deadline=None)
@given(st.integers(min_value=1, max_value=1000), st.integers(min_value=1, max_value=2000))
def test_attempts_are_exhausted_at_max_attempts(max_attempts: int, attempt: int) -> None:
    decision = decide_retry(policy(max_attempts=max_attempts), attempt, error_type="E", retryable=True)
    assert decision.retry is (attempt < max_attempts)
    if not decision.retry:
        assert decision.reason == f"attempts exhausted ({attempt} of {max_attempts})"


def test_an_expired_lease_is_a_retryable_attempt() -> None:
    assert decide_lease_expiry(policy(), 1, rand=lambda: 0.0).retry
    assert not decide_lease_expiry(policy(max_attempts=1), 1).retry
    listed = policy(non_retryable_error_types=frozenset({LEASE_EXPIRED}))
    assert not decide_lease_expiry(listed, 1).retry


def test_a_handed_back_attempt_is_retried_at_once_and_refunded() -> None:
    decision = decide_retry(policy(), 3, error_type=HANDED_BACK, retryable=True, rand=lambda: 0.5)
    assert (decision.retry, decision.delay, decision.refund) == (True, 0.0, True)
    refused = decide_retry(policy(), 1, error_type=HANDED_BACK, retryable=False)
    assert not refused.retry
