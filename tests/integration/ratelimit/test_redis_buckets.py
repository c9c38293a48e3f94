"""Token buckets in a real Redis: limits, retry_after, sharing between replicas, expiry, script reload."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
from prometheus_client import REGISTRY

from baton.config import RateLimitConfig
from baton.ratelimit import CompositeLimiter, LocalBuckets, RedisBuckets, build_limiter

if TYPE_CHECKING:
    from .conftest import RedisServer

pytestmark = pytest.mark.redis


def unique_key() -> str:
    return f"principal:{uuid.uuid4()}"


@pytest.fixture
async def limiter(redis_server: RedisServer) -> AsyncIterator[CompositeLimiter]:
    limiter = build_limiter(RateLimitConfig(redis_url=redis_server.url))
    yield limiter
    await limiter.close()


async def test_a_burst_over_the_limit_is_refused_with_retry_after(limiter: CompositeLimiter) -> None:
    key = unique_key()
    verdicts = [await limiter.acquire(key, 1, 2.0, 3) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.remaining for v in verdicts[:3]] == pytest.approx([2, 1, 0], abs=0.05)
    refused = verdicts[3]
    assert 0.4 < refused.retry_after <= 0.5  # one token at 2/s, minus the time the calls took
    assert (limiter.backend, limiter.state) == ("redis", "ok")
    await asyncio.sleep(refused.retry_after)
    assert (await limiter.acquire(key, 1, 2.0, 3)).allowed


async def test_refusals_by_redis_are_counted(limiter: CompositeLimiter) -> None:
    def rejected() -> float:
        return REGISTRY.get_sample_value("baton_ratelimit_rejected_total", {"backend": "redis"}) or 0.0

    before = rejected()
    key = unique_key()
    assert (await limiter.acquire(key, 5, 0.01, 5)).allowed
    refused = await limiter.acquire(key, 2, 0.01, 5)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(200, rel=0.01)
    assert rejected() == before + 1


async def test_two_replicas_share_one_bucket(redis_server: RedisServer) -> None:
    config = RateLimitConfig(redis_url=redis_server.url)
    replicas = [build_limiter(config), build_limiter(config)]
    try:
        key = unique_key()
        verdicts = [await replicas[n % 2].acquire(key, 1, 0.01, 5) for n in range(10)]
        assert sum(v.allowed for v in verdicts) == 5
        assert not (await replicas[0].acquire(key, 1, 0.01, 5)).allowed
        assert not (await replicas[1].acquire(key, 1, 0.01, 5)).allowed
    finally:
        for replica in replicas:
            await replica.close()


async def test_concurrent_checks_are_atomic(redis_server: RedisServer) -> None:
    # A generous timeout: a hundred connections opened at once on a busy machine may take longer than the
    # server's 0.25 s, and a fallback to local buckets is not what this test is about.
    limiter = CompositeLimiter(LocalBuckets(), RedisBuckets.from_url(redis_server.url, timeout=5.0))
    try:
        key = unique_key()
        verdicts = await asyncio.gather(*(limiter.acquire(key, 1, 0.01, 20) for _ in range(100)))
        assert (limiter.backend, limiter.state) == ("redis", "ok")
        assert sum(v.allowed for v in verdicts) == 20
    finally:
        await limiter.close()


async def test_a_bucket_is_one_hash_in_server_time_that_expires(redis_server: RedisServer) -> None:
    buckets = RedisBuckets.from_url(redis_server.url)
    try:
        await buckets.acquire("principal:ttl", 1, 10.0, 50)
        with redis_server.client() as client:
            seconds, micros = client.time()
            stored = client.hgetall("baton:rl:principal:ttl")
            ttl_ms = client.pttl("baton:rl:principal:ttl")
        assert float(stored[b"tokens"]) == pytest.approx(49, abs=0.1)
        assert float(stored[b"ts"]) == pytest.approx(seconds + micros / 1e6, abs=1.0)
        assert 9_000 < ttl_ms <= 10_000  # about twice the 5 s a full refill takes
    finally:
        await buckets.close()


async def test_idle_keys_vanish(redis_server: RedisServer) -> None:
    buckets = RedisBuckets.from_url(redis_server.url)
    try:
        await buckets.acquire("principal:short", 1, 1000.0, 1)
        await asyncio.sleep(1.1)  # the shortest expiry is 1 s
        with redis_server.client() as client:
            assert not client.exists("baton:rl:principal:short")
    finally:
        await buckets.close()


async def test_the_script_is_reloaded_after_a_script_flush(redis_server: RedisServer) -> None:
    buckets = RedisBuckets.from_url(redis_server.url)
    try:
        key = unique_key()
        assert (await buckets.acquire(key, 1, 0.01, 2)).allowed
        with redis_server.client() as client:
            client.script_flush()
        assert (await buckets.acquire(key, 1, 0.01, 2)).allowed
        assert not (await buckets.acquire(key, 1, 0.01, 2)).allowed
    finally:
        await buckets.close()
