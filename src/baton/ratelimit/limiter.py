"""The limiter the server uses: local buckets, or Redis with a fallback to local buckets while Redis is down.

With Redis every check goes to Redis. The first failure (connection refused, timeout, an error reply) switches
to fallback: one warning, the fallback gauge set to 1, the fallback counter up by one, and from then on checks
go to local buckets without touching Redis, so they pay no timeout. At most every `probe_interval` seconds a
check starts a background PING; when one succeeds, one info line is logged, the gauge goes back to 0 and
checks go to Redis again. While falling back each replica enforces the limits on its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Literal

from baton.config import RateLimitConfig
from baton.observability.logging import get_logger
from baton.ratelimit.buckets import LocalBuckets, Verdict
from baton.ratelimit.metrics import REDIS_FALLBACK, REDIS_FALLBACKS, REJECTED_LOCAL, REJECTED_REDIS

log = get_logger(__name__)

if TYPE_CHECKING:
    from baton.ratelimit.redis import RedisBuckets


def _redis_errors() -> tuple[type[Exception], ...]:
    """What counts as "Redis is unavailable". Cancellation is not caught: it belongs to the RPC.

    redis-py (and the `cryptography` it loads) is imported only when Redis is configured, to keep start-up fast.
    """
    from redis.exceptions import RedisError

    return (RedisError, OSError, TimeoutError)


class CompositeLimiter:
    """Local buckets, or Redis buckets with a local fallback (see the module docstring); a `RateLimiter`."""

    def __init__(
        self,
        local: LocalBuckets,
        remote: RedisBuckets | None = None,
        *,
        probe_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._local = local
        self._remote = remote
        self._probe_interval = probe_interval
        self._clock = clock
        self._healthy = True
        self._next_probe = 0.0
        self._probe: asyncio.Task[None] | None = None
        self._errors: tuple[type[Exception], ...] = _redis_errors() if remote is not None else ()

    @property
    def backend(self) -> Literal["local", "redis"]:
        """The configured backend: "redis" when a Redis URL is set, else "local"."""
        return "local" if self._remote is None else "redis"

    @property
    def state(self) -> Literal["ok", "fallback"]:
        """`fallback` while Redis is unreachable and local buckets decide, else `ok`."""
        return "ok" if self._healthy else "fallback"

    def spend_locally(self, key: str, cost: int, rate: float, burst: int) -> float | None:
        """The chain's hot path when local buckets decide (no Redis configured): 0.0 when the tokens were spent,
        else the seconds to wait (counted as a rejection); None when Redis must be asked, through `acquire`."""
        if self._remote is not None:
            return None
        wait = self._local.spend(key, cost, rate, burst)
        if wait:
            REJECTED_LOCAL.inc()
        return wait

    async def acquire(self, key: str, cost: int, rate: float, burst: int) -> Verdict:
        """Spend `cost` tokens from `key`'s bucket (`rate` tokens/s, capacity `burst`) if it holds them."""
        remote = self._remote
        if remote is not None:
            if self._healthy:
                try:
                    verdict = await remote.acquire(key, cost, rate, burst)
                except self._errors as exc:
                    self._fall_back(remote, exc)
                else:
                    if not verdict.allowed:
                        REJECTED_REDIS.inc()
                    return verdict
            elif self._probe is None and (now := self._clock()) >= self._next_probe:
                self._next_probe = now + self._probe_interval
                self._probe = asyncio.get_running_loop().create_task(self._run_probe(remote))
        verdict = self._local.try_acquire(key, cost, rate, burst)
        if not verdict.allowed:
            REJECTED_LOCAL.inc()
        return verdict

    def _fall_back(self, remote: RedisBuckets, exc: Exception) -> None:
        if not self._healthy:
            return  # a check started before the switch failed too: already counted and logged
        self._healthy = False
        self._next_probe = self._clock() + self._probe_interval
        REDIS_FALLBACK.set(1)
        REDIS_FALLBACKS.inc()
        log.warning(
            "ratelimit.redis_unavailable",
            redis=remote.target,
            error=type(exc).__name__,
            fallback="local",
            probe_interval_seconds=self._probe_interval,
        )

    async def _run_probe(self, remote: RedisBuckets) -> None:
        try:
            await remote.ping()
        except self._errors:
            return
        finally:
            self._probe = None
        self._healthy = True
        REDIS_FALLBACK.set(0)
        log.info("ratelimit.redis_recovered", redis=remote.target)

    async def close(self) -> None:
        """Stop a running probe and close the Redis connections."""
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)
        if self._remote is not None:
            await self._remote.close()
        if not self._healthy:
            REDIS_FALLBACK.set(0)


def build_limiter(config: RateLimitConfig, *, probe_interval: float = 2.0) -> CompositeLimiter:
    """The server's limiter: local buckets when `redis_url` is unset, else Redis with a local fallback."""
    remote = None
    if config.redis_url is not None:
        from baton.ratelimit.redis import RedisBuckets

        remote = RedisBuckets.from_url(config.redis_url.get_secret_value())
    return CompositeLimiter(LocalBuckets(), remote, probe_interval=probe_interval)


def effective_limits(config: RateLimitConfig, roles: Iterable[str]) -> tuple[float, int]:
    """(rate, burst) for a principal holding `roles`: the configured ones times its highest role multiplier.

    Roles without a multiplier are ignored; with none, the multiplier is 1.
    """
    multipliers = config.rate_limit_role_multipliers
    multiplier = max((multipliers[role] for role in roles if role in multipliers), default=1.0)
    return config.rate_limit_rps * multiplier, max(1, round(config.rate_limit_burst * multiplier))
