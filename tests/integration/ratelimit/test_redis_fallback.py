"""Redis going away and coming back: local buckets answer meanwhile, one warning, one recovery, metrics."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from baton.ratelimit import CompositeLimiter, LocalBuckets, RedisBuckets

if TYPE_CHECKING:
    from .conftest import RedisServer

pytestmark = pytest.mark.redis


def fallback_gauge() -> float | None:
    return REGISTRY.get_sample_value("baton_ratelimit_redis_fallback")


def fallbacks() -> float:
    return REGISTRY.get_sample_value("baton_ratelimit_redis_fallbacks_total") or 0.0


def events(logs: Sequence[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


async def timed_acquire(limiter: CompositeLimiter, key: str, cost: int = 1) -> tuple[bool, float]:
    started = time.perf_counter()
    verdict = await limiter.acquire(key, cost, 100.0, 1000)
    return verdict.allowed, time.perf_counter() - started


async def keep_calling_until_back_on_redis(limiter: CompositeLimiter, key: str, within: float) -> None:
    deadline = time.monotonic() + within
    while limiter.state != "ok":
        assert time.monotonic() < deadline, f"still {limiter.state} after {within} s"
        allowed, took = await timed_acquire(limiter, key)
        assert allowed
        assert took < 0.05
        await asyncio.sleep(0.02)


async def test_redis_killed_then_restarted(killable_redis: RedisServer) -> None:
    limiter = CompositeLimiter(LocalBuckets(), RedisBuckets.from_url(killable_redis.url), probe_interval=0.2)
    try:
        assert (await limiter.acquire("principal:a", 1, 100.0, 1000)).allowed
        assert limiter.state == "ok"
        assert fallback_gauge() == 0
        before = fallbacks()
        with capture_logs() as logs:
            killable_redis.kill()
            for _ in range(50):
                allowed, took = await timed_acquire(limiter, "principal:a")
                assert allowed
                assert took < 0.05
            assert (limiter.backend, limiter.state) == ("redis", "fallback")
            assert fallback_gauge() == 1
            assert fallbacks() == before + 1
            [warning] = events(logs, "ratelimit.redis_unavailable")
            assert warning["log_level"] == "warning"
            assert warning["error"] == "ConnectionError"
            assert warning["redis"] == f"redis://127.0.0.1:{killable_redis.executor.port}/0"
            assert killable_redis.password
            assert killable_redis.password not in json.dumps(logs, default=str)

            killable_redis.start()
            await keep_calling_until_back_on_redis(limiter, "principal:a", within=5.0)
            assert fallback_gauge() == 0
            assert fallbacks() == before + 1
            [recovered] = events(logs, "ratelimit.redis_recovered")
            assert recovered["log_level"] == "info"
            assert len(events(logs, "ratelimit.redis_unavailable")) == 1

        assert (await limiter.acquire("principal:a", 1, 100.0, 1000)).allowed
        with killable_redis.client() as client:
            assert client.exists("baton:rl:principal:a"), "checks go to Redis again"
    finally:
        await limiter.close()


async def test_while_falling_back_local_buckets_enforce_the_limits(killable_redis: RedisServer) -> None:
    limiter = CompositeLimiter(LocalBuckets(), RedisBuckets.from_url(killable_redis.url), probe_interval=60)
    rejected_locally = REGISTRY.get_sample_value("baton_ratelimit_rejected_total", {"backend": "local"}) or 0
    try:
        killable_redis.kill()
        verdicts = [await limiter.acquire("principal:b", 1, 0.01, 3) for _ in range(4)]
        assert [v.allowed for v in verdicts] == [True, True, True, False]
        assert verdicts[3].retry_after == pytest.approx(100, rel=0.01)
        assert limiter.state == "fallback"
        assert REGISTRY.get_sample_value("baton_ratelimit_rejected_total", {"backend": "local"}) == (
            rejected_locally + 1
        )
    finally:
        await limiter.close()
    assert fallback_gauge() == 0, "close() leaves no stale gauge behind"


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers: a hung Redis."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_a_hung_redis_costs_one_timeout_not_one_per_call(silent_server: int) -> None:
    remote = RedisBuckets.from_url(f"redis://127.0.0.1:{silent_server}/0", timeout=0.25)
    limiter = CompositeLimiter(LocalBuckets(), remote, probe_interval=60)
    before = fallbacks()
    try:
        with capture_logs() as logs:
            allowed, took = await timed_acquire(limiter, "principal:c")
            assert allowed
            assert 0.2 < took < 1.0
            for _ in range(20):
                allowed, took = await timed_acquire(limiter, "principal:c")
                assert allowed
                assert took < 0.05
        [warning] = events(logs, "ratelimit.redis_unavailable")
        assert warning["error"] == "TimeoutError"
        assert fallbacks() == before + 1
    finally:
        await limiter.close()
