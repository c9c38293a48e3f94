"""The composite limiter without Redis, role multipliers, and the package's public surface."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

import baton.ratelimit
from baton.config import RateLimitConfig
from baton.ratelimit import CompositeLimiter, LocalBuckets, RateLimiter, build_limiter, effective_limits
from baton.ratelimit.redis import redacted_url


def rejected(backend: str) -> float:
    return REGISTRY.get_sample_value("baton_ratelimit_rejected_total", {"backend": backend}) or 0.0


def test_the_public_surface_is_pinned() -> None:
    assert sorted(baton.ratelimit.__all__) == [
        "CompositeLimiter",
        "LocalBuckets",
        "RateLimiter",
        "RedisBuckets",
        "Verdict",
        "build_limiter",
        "effective_limits",
    ]


async def test_without_redis_the_limiter_uses_local_buckets() -> None:
    limiter = build_limiter(RateLimitConfig(redis_url=None))
    assert (limiter.backend, limiter.state) == ("local", "ok")
    before = rejected("local")
    assert (await limiter.acquire("principal:a", 2, 1.0, 3)).allowed
    verdict = await limiter.acquire("principal:a", 2, 1.0, 3)
    assert not verdict.allowed
    assert verdict.retry_after == pytest.approx(1.0, abs=0.01)
    assert rejected("local") == before + 1
    await limiter.close()


async def test_with_a_redis_url_the_backend_is_redis_before_any_call() -> None:
    limiter = build_limiter(RateLimitConfig(redis_url="redis://127.0.0.1:1/0"))
    assert (limiter.backend, limiter.state) == ("redis", "ok")
    await limiter.close()


def test_the_composite_is_a_rate_limiter() -> None:
    limiter: RateLimiter = CompositeLimiter(LocalBuckets())
    assert isinstance(limiter, CompositeLimiter)


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        ((), (100.0, 200)),
        (("nobody",), (100.0, 200)),
        (("operator",), (500.0, 1000)),
        (("operator", "admin", "nobody"), (1000.0, 2000)),
        (("slow",), (25.0, 50)),
        (("tiny",), (0.1, 1)),
    ],
)
def test_the_highest_role_multiplier_scales_rate_and_burst(roles: tuple[str, ...], expected: tuple[float, int]) -> None:
    config = RateLimitConfig(
        rate_limit_rps=100.0,
        rate_limit_burst=200,
        rate_limit_role_multipliers={"admin": 10.0, "operator": 5.0, "slow": 0.25, "tiny": 0.001},
    )
    assert effective_limits(config, roles) == pytest.approx(expected)
    assert isinstance(effective_limits(config, roles)[1], int)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@redis.internal:6379/0", "redis://redis.internal:6379/0"),
        ("rediss://baton:hunter2@redis.internal:6380/1", "rediss://redis.internal:6380/1"),
        ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
        ("unix://baton:hunter2@/run/redis.sock", "unix:///run/redis.sock"),
        ("unix:///run/redis.sock?db=0&password=hunter2", "unix:///run/redis.sock"),
    ],
)
def test_redis_urls_are_logged_without_credentials(url: str, shown: str) -> None:
    assert redacted_url(url) == shown
