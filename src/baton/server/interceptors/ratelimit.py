"""Rate limiting: one token bucket per principal (per peer address when unauthenticated).

The cost of a call comes from the contract; the rate and burst from configuration, scaled by the caller's highest
role. Over the limit: RESOURCE_EXHAUSTED with a RetryInfo detail and a `retry-after` trailer (whole seconds).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import NoReturn
from urllib.parse import unquote

from prometheus_client import Counter

from baton.auth.principal import RoleBinding
from baton.config import RateLimitConfig
from baton.errors import RateLimited
from baton.ratelimit import RateLimiter, effective_limits
from baton.server.interceptors.base import Call

_MAX_PRINCIPALS = 10_000
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
        # Per principal ID: its bindings (the entry holds while the principal's are the same object), its bucket
        # key and limits, so a call hashes one string rather than a tuple of dataclasses and enums.
        self._by_principal: dict[str, tuple[tuple[RoleBinding, ...], str, float, int]] = {}
        #: Local buckets' synchronous check (CompositeLimiter.spend_locally), when the limiter has one.
        self._spend_locally = getattr(limiter, "spend_locally", None)

    def before(self, call: Call) -> Awaitable[None] | None:
        """Spend the call's cost or raise RateLimited (without awaiting when the buckets are local)."""
        principal = call.principal
        if principal is not None:
            known = self._by_principal.get(principal.id)
            if known is None or known[0] is not principal.bindings:
                roles = {binding.role.value for binding in principal.bindings}
                known = (principal.bindings, f"principal:{principal.id}", *effective_limits(self._config, roles))
                if len(self._by_principal) >= _MAX_PRINCIPALS:
                    self._by_principal.clear()
                self._by_principal[principal.id] = known
            _, key, rate, burst = known
        else:
            key = f"peer:{peer_host(call.context.peer() or '')}"
            rate, burst = self._default
        if self._spend_locally is not None:
            wait = self._spend_locally(key, call.policy.rate_cost, rate, burst)
            if wait == 0.0:
                return None
            if wait is not None:
                self._refuse(call, wait, rate, burst)
        return self._remote_check(call, key, rate, burst)

    async def _remote_check(self, call: Call, key: str, rate: float, burst: int) -> None:
        verdict = await self._limiter.acquire(key, call.policy.rate_cost, rate, burst)
        if not verdict.allowed:
            self._refuse(call, verdict.retry_after, rate, burst)

    def _refuse(self, call: Call, retry_after: float, rate: float, burst: int) -> NoReturn:
        RATE_LIMITED.labels(call.policy.service).inc()
        raise RateLimited(
            f"rate limit exceeded: {burst} calls burst, {rate:g}/s sustained; retry in {retry_after:.2f}s",
            retry_after=retry_after,
            metadata={"rate": f"{rate:g}", "burst": str(burst), "cost": str(call.policy.rate_cost)},
        )

    def after(self, call: Call) -> None:
        """Nothing to undo: spent tokens are not refunded."""
