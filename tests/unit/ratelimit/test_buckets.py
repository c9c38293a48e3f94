"""In-process token buckets: the bucket math, eviction, and its bounds under any sequence of calls."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.ratelimit import LocalBuckets, RateLimiter, Verdict


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_a_burst_is_allowed_then_refused() -> None:
    buckets = LocalBuckets(clock=Clock())
    verdicts = [buckets.try_acquire("principal:a", 1, 1.0, 5) for _ in range(6)]
    assert [v.allowed for v in verdicts] == [True] * 5 + [False]
    assert [v.remaining for v in verdicts[:5]] == [4, 3, 2, 1, 0]
    assert verdicts[0] == Verdict(allowed=True, retry_after=0.0, remaining=4.0)


def test_retry_after_is_the_time_to_refill_the_missing_tokens() -> None:
    clock = Clock()
    buckets = LocalBuckets(clock=clock)
    assert buckets.try_acquire("k", 3, 2.0, 3).allowed
    refused = buckets.try_acquire("k", 2, 2.0, 3)
    assert (refused.allowed, refused.remaining) == (False, 0.0)
    assert refused.retry_after == pytest.approx(1.0)
    clock.advance(0.5)
    assert buckets.try_acquire("k", 2, 2.0, 3).retry_after == pytest.approx(0.5)
    clock.advance(0.5)
    assert buckets.try_acquire("k", 2, 2.0, 3).allowed


def test_waiting_exactly_retry_after_is_enough() -> None:
    clock = Clock(now=12_345.678)
    buckets = LocalBuckets(clock=clock)
    buckets.try_acquire("k", 7, 3.0, 7)
    refused = buckets.try_acquire("k", 5, 3.0, 7)
    clock.advance(refused.retry_after)
    assert buckets.try_acquire("k", 5, 3.0, 7).allowed


def test_cost_is_spent_in_one_go() -> None:
    buckets = LocalBuckets(clock=Clock())
    assert buckets.try_acquire("k", 4, 1.0, 10).remaining == 6
    assert buckets.try_acquire("k", 4, 1.0, 10).remaining == 2
    refused = buckets.try_acquire("k", 4, 1.0, 10)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(2.0)
    assert buckets.try_acquire("k", 2, 1.0, 10).allowed, "a refusal spends nothing"


def test_a_cost_above_burst_takes_a_full_bucket() -> None:
    clock = Clock()
    buckets = LocalBuckets(clock=clock)
    assert buckets.try_acquire("k", 50, 1.0, 10) == Verdict(True, 0.0, 0.0)
    refused = buckets.try_acquire("k", 50, 1.0, 10)
    assert refused.retry_after == pytest.approx(10.0)
    clock.advance(10.0)
    assert buckets.try_acquire("k", 50, 1.0, 10).allowed


def test_tokens_refill_over_time_up_to_burst() -> None:
    clock = Clock()
    buckets = LocalBuckets(clock=clock)
    for _ in range(4):
        buckets.try_acquire("k", 1, 10.0, 4)
    clock.advance(0.25)
    assert buckets.try_acquire("k", 1, 10.0, 4).remaining == pytest.approx(1.5)
    clock.advance(3600)
    assert buckets.try_acquire("k", 1, 10.0, 4).remaining == pytest.approx(3.0)


def test_buckets_are_per_key() -> None:
    buckets = LocalBuckets(clock=Clock())
    assert buckets.try_acquire("principal:a", 1, 1.0, 1).allowed
    assert not buckets.try_acquire("principal:a", 1, 1.0, 1).allowed
    assert buckets.try_acquire("principal:b", 1, 1.0, 1).allowed


def test_the_least_recently_used_bucket_is_evicted_past_the_cap() -> None:
    buckets = LocalBuckets(max_keys=3, clock=Clock())
    for key in ("a", "b", "c"):
        assert buckets.try_acquire(key, 1, 0.001, 1).allowed
    assert not buckets.try_acquire("a", 1, 0.001, 1).allowed  # "a" is now the most recently used
    buckets.try_acquire("d", 1, 0.001, 1)
    assert len(buckets) == 3
    assert buckets.try_acquire("b", 1, 0.001, 1).allowed, "b was evicted, so it starts full"
    assert not buckets.try_acquire("a", 1, 0.001, 1).allowed


def test_memory_stays_bounded_under_many_callers() -> None:
    buckets = LocalBuckets(max_keys=1000, clock=Clock())
    for number in range(10_000):
        buckets.try_acquire(f"peer:{number}", 1, 1.0, 5)
    assert len(buckets) == 1000


def test_max_keys_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_keys"):
        LocalBuckets(max_keys=0)


async def test_acquire_is_the_async_face_of_try_acquire() -> None:
    limiter: RateLimiter = LocalBuckets(clock=Clock())
    assert await limiter.acquire("k", 1, 1.0, 1) == Verdict(True, 0.0, 0.0)
    assert (await limiter.acquire("k", 1, 1.0, 1)).retry_after == pytest.approx(1.0)


calls = st.lists(
    st.tuples(st.floats(min_value=0, max_value=2, allow_nan=False), st.integers(min_value=1, max_value=8)),
    max_size=300,
)


@given(
    rate=st.floats(min_value=0.01, max_value=1000, allow_nan=False),
    burst=st.integers(min_value=1, max_value=50),
    calls=calls,
)
def test_tokens_spent_never_exceed_burst_plus_refill(rate: float, burst: int, calls: list[tuple[float, int]]) -> None:
    clock = Clock(now=0.0)
    buckets = LocalBuckets(clock=clock)
    spent = allowed = 0
    for pause, cost in calls:
        clock.advance(pause)
        verdict = buckets.try_acquire("k", cost, rate, burst)
        assert verdict.remaining >= 0
        if verdict.allowed:
            allowed += 1
            spent += min(cost, burst)
        else:
            assert verdict.retry_after > 0
    assert spent <= burst + rate * clock.now + 1e-6
    if all(cost == 1 for _, cost in calls):
        assert allowed <= burst + rate * clock.now + 1e-6


@given(
    rate=st.floats(min_value=0.01, max_value=1000, allow_nan=False),
    burst=st.integers(min_value=1, max_value=50),
    calls=calls,
)
def test_a_refused_call_is_allowed_after_retry_after(rate: float, burst: int, calls: list[tuple[float, int]]) -> None:
    clock = Clock(now=0.0)
    buckets = LocalBuckets(clock=clock)
    for pause, cost in calls:
        clock.advance(pause)
        verdict = buckets.try_acquire("k", cost, rate, burst)
        if not verdict.allowed:
            clock.advance(verdict.retry_after)
            assert buckets.try_acquire("k", cost, rate, burst).allowed


def test_spend_is_try_acquire_without_the_verdict() -> None:
    clock = Clock()
    spending, acquiring = LocalBuckets(clock=clock), LocalBuckets(clock=clock)
    for step, cost in enumerate([1, 2, 3, 1, 4, 2, 9, 1]):
        clock.advance(0.25 * (step % 3))
        wait = spending.spend("k", cost, 2.0, 5)
        verdict = acquiring.try_acquire("k", cost, 2.0, 5)
        assert (wait == 0.0) is verdict.allowed
        assert wait == pytest.approx(verdict.retry_after)
        assert wait >= 0.0
