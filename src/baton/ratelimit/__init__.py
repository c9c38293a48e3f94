"""Rate limiting: token buckets per caller, in-process or shared through Redis, behind one small Protocol.

The server builds a `CompositeLimiter` with `build_limiter(config)` and asks it for a `Verdict` per call; the
rate-limit interceptor turns a refusal into RESOURCE_EXHAUSTED with `retry_after`.
"""

from baton.ratelimit.buckets import LocalBuckets, RateLimiter, Verdict
from baton.ratelimit.limiter import CompositeLimiter, build_limiter, effective_limits

__all__ = [
    "CompositeLimiter",
    "LocalBuckets",
    "RateLimiter",
    "RedisBuckets",
    "Verdict",
    "build_limiter",
    "effective_limits",
]


def __getattr__(name: str) -> object:
    # RedisBuckets pulls in redis-py; import it only when asked for.
    if name == "RedisBuckets":
        from baton.ratelimit.redis import RedisBuckets

        return RedisBuckets
    raise AttributeError(name)
