"""The rate-limit decision: a verdict, the limiter Protocol, and in-process token buckets.

A bucket holds up to `burst` tokens and gains `rate` tokens per second; a call of cost `cost` spends that many
tokens or is refused with the time until enough have come back. Nothing here knows about gRPC: the interceptor
turns a `Verdict` into a status.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple, Protocol

#: Slack for float rounding, so a caller who waits exactly `retry_after` is admitted.
EPSILON = 1e-9


class Verdict(NamedTuple):
    """The outcome of one check: allowed or not, seconds until enough tokens, tokens left in the bucket.

    A named tuple rather than a frozen dataclass: one is made per call, and a frozen dataclass's `__init__` sets
    each field through `object.__setattr__` (about four times the cost of making the tuple)."""

    allowed: bool
    retry_after: float
    remaining: float


class RateLimiter(Protocol):
    """Decides whether `key` (e.g. "principal:<id>", "peer:<ip>") may spend `cost` tokens now."""

    async def acquire(self, key: str, cost: int, rate: float, burst: int) -> Verdict:
        """Spend `cost` tokens from `key`'s bucket (`rate` tokens/s, capacity `burst`) if it holds them."""
        ...


class LocalBuckets:
    """Token buckets in this process, refilled lazily; the least recently used are evicted past `max_keys`.

    One event loop calls it, so there are no locks. A cost above `burst` is charged as a full bucket, so such
    a call is admitted once the bucket is full rather than never. Eviction forgets a bucket, which then starts
    full again: with the default cap that only happens under a flood of distinct callers.
    """

    __slots__ = ("_buckets", "_clock", "_max_keys")

    def __init__(self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._max_keys = max_keys
        self._clock = clock

    def __len__(self) -> int:
        return len(self._buckets)

    def spend(self, key: str, cost: int, rate: float, burst: int) -> float:
        """The hot path of `try_acquire`: 0.0 when `cost` tokens were spent from `key`'s bucket, else the
        seconds until it holds them (always above 0). No Verdict is made: most calls only need to know that."""
        now = self._clock()
        buckets = self._buckets
        state = buckets.get(key)
        if state is None:
            tokens = float(burst)
            if len(buckets) >= self._max_keys:
                buckets.popitem(last=False)
        else:
            tokens = state[0] + (now - state[1]) * rate
            if tokens > burst:
                tokens = float(burst)
            buckets.move_to_end(key)
        needed = cost if cost <= burst else burst
        if tokens + EPSILON >= needed:
            buckets[key] = (tokens - needed, now)
            return 0.0
        buckets[key] = (tokens, now)
        return (needed - tokens) / rate

    def try_acquire(self, key: str, cost: int, rate: float, burst: int) -> Verdict:
        """Synchronous `acquire`."""
        wait = self.spend(key, cost, rate, burst)
        tokens = self._buckets[key][0]
        return Verdict(wait == 0.0, wait, tokens if tokens > 0.0 else 0.0)

    async def acquire(self, key: str, cost: int, rate: float, burst: int) -> Verdict:
        """Spend `cost` tokens from the bucket of `key` if it holds them (see `RateLimiter`)."""
        return self.try_acquire(key, cost, rate, burst)
