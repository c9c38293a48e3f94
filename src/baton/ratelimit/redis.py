"""Token buckets in Redis, shared by every replica: one atomic Lua script per check.

Each bucket is a hash `baton:rl:<key>` holding `tokens` and `ts` (Redis server time, so replicas whose clocks
disagree still agree on the bucket), expiring after about twice the time it takes to refill, when it no longer
carries any information. The script runs by EVALSHA; after a Redis restart or SCRIPT FLUSH the first call gets
NOSCRIPT and falls back to EVAL, which also caches the script again. Errors are raised to the caller: deciding
what to do when Redis is unreachable is `CompositeLimiter`'s job.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError

from baton.ratelimit.buckets import Verdict

KEY_PREFIX = "baton:rl:"

# Same math as LocalBuckets.try_acquire. Numbers go out with %.17g: Lua's default %.14g would round the
# timestamp (1.7e9 s with microseconds) and the token counts.
BUCKET_SCRIPT = """
local cost = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local last = tonumber(state[2])
if tokens == nil or last == nil then
  tokens = burst
else
  tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
end
local needed = math.min(cost, burst)
local allowed = 0
local retry_after = 0
if tokens + 1e-9 >= needed then
  tokens = tokens - needed
  allowed = 1
else
  retry_after = (needed - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.max(1000, math.ceil(2000 * burst / rate)))
return {allowed, string.format('%.17g', retry_after), string.format('%.17g', math.max(0, tokens))}
"""
BUCKET_SCRIPT_SHA = hashlib.sha1(BUCKET_SCRIPT.encode(), usedforsecurity=False).hexdigest()


def redacted_url(url: str) -> str:
    """`url` without its user name and password, safe to log."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"


class RedisBuckets:
    """Token buckets in Redis (see the module docstring); implements `RateLimiter`."""

    def __init__(self, client: Redis, *, target: str = "redis", prefix: str = KEY_PREFIX) -> None:
        self._client = client
        self._prefix = prefix
        #: Where the buckets live, without credentials (for logs).
        self.target = target

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 0.25) -> RedisBuckets:
        """Buckets in the Redis at `url`, with short timeouts and no retries so a dead Redis fails fast."""
        client = Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, target=redacted_url(url))

    async def acquire(self, key: str, cost: int, rate: float, burst: int) -> Verdict:
        """Spend `cost` tokens from the shared bucket of `key` if it holds them; raises on Redis errors."""
        name = self._prefix + key
        try:
            result = await self._client.evalsha(BUCKET_SCRIPT_SHA, 1, name, cost, rate, burst)
        except NoScriptError:
            result = await self._client.eval(BUCKET_SCRIPT, 1, name, cost, rate, burst)
        allowed, retry_after, remaining = result
        return Verdict(allowed == 1, float(retry_after), float(remaining))

    async def ping(self) -> None:
        """Raise unless Redis answers."""
        await self._client.ping()

    async def close(self) -> None:
        """Close the connections."""
        await self._client.aclose()
