"""Prometheus metrics of the rate limiter, registered once in the default registry.

prometheus-client appends `_total` to counter names itself, so the counters are exported as
`baton_ratelimit_redis_fallbacks_total` and `baton_ratelimit_rejected_total`.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

REDIS_FALLBACK = Gauge(
    "baton_ratelimit_redis_fallback",
    "1 while Redis is unreachable and rate limits are enforced by local buckets.",
)
REDIS_FALLBACKS = Counter(
    "baton_ratelimit_redis_fallbacks",
    "Switches from Redis to local buckets because Redis failed.",
)
REJECTED = Counter(
    "baton_ratelimit_rejected",
    "Calls refused by the rate limiter, by the backend that decided.",
    ["backend"],
)

# Label children bound once: `labels()` is too slow for the per-call path.
REJECTED_LOCAL = REJECTED.labels(backend="local")
REJECTED_REDIS = REJECTED.labels(backend="redis")
