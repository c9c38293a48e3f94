"""Rate limiting: one token bucket per principal (per peer address when unauthenticated).

The cost of a call comes from the contract; the rate and burst from configuration, scaled by the caller's highest
role. Over the limit: RESOURCE_EXHAUSTED with a RetryInfo detail and a `retry-after` trailer (whole seconds).
"""

from __future__ import annotations

from urllib.parse import unquote

from prometheus_client import Counter

from baton.config import RateLimitConfig
from baton.errors import RateLimited
from baton.ratelimit import RateLimiter, effective_limits
from baton.server.interceptors.base import Call

RATE_LIMITED = Counter("baton_rate_limited_calls", "Calls refused by the rate limiter.", ("grpc_service",))


def peer_host(peer: str) -> str:
    """The address part of a gRPC peer string (`ipv4:1.2.3.4:5678` → `1.2.3.4`)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":  # gRPC percent-encodes the brackets: ipv6:%5B::1%5D:50812
        return unquote(rest).rsplit(":", 1)[0].strip("[]")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    return peer


class RateLimitConcern:
    """Takes the call's cost from the caller's bucket, or refuses the call."""

    def __init__(self, limiter: RateLimiter, config: RateLimitConfig) -> None:
        self._limiter = limiter
        self._config = config
        self._default = (config.rate_limit_rps, config.rate_limit_burst)
        self._by_roles: dict[frozenset[str], tuple[float, int]] = {}

    def _limits(self, roles: frozenset[str]) -> tuple[float, int]:
        limits = self._by_roles.get(roles)
        if limits is None:
            limits = effective_limits(self._config, roles)
            self._by_roles[roles] = limits
        return limits

    async def before(self, call: Call) -> None:
        """Spend the call's cost or raise RateLimited."""
        principal = call.principal
        if principal is not None:
            key = f"principal:{principal.id}"
            rate, burst = self._limits(frozenset(principal.roles))
        else:
            key = f"peer:{peer_host(call.context.peer() or '')}"
            rate, burst = self._default
        verdict = await self._limiter.acquire(key, call.policy.rate_cost, rate, burst)
        if not verdict.allowed:
            RATE_LIMITED.labels(call.policy.service).inc()
            raise RateLimited(
                f"rate limit exceeded: {burst} calls burst, {rate:g}/s sustained; retry in {verdict.retry_after:.2f}s",
                retry_after=verdict.retry_after,
                metadata={"rate": f"{rate:g}", "burst": str(burst), "cost": str(call.policy.rate_cost)},
            )

    def after(self, call: Call) -> None:
        """Nothing to undo: spent tokens are not refunded."""
