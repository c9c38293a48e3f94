"""Retries with exponential backoff and jitter (tenacity), only where the contract allows them.

A call is retried when its method is NO_SIDE_EFFECTS or IDEMPOTENT (with its idempotency key given), it failed
with UNAVAILABLE or RESOURCE_EXHAUSTED (the latter only with a RetryInfo detail: without one it is a size limit,
not a rate limit), attempts remain and the call's deadline leaves room for the wait. A server's RetryInfo delay
wins over the backoff when longer.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import grpc
import tenacity

from baton.client._errors import BatonError

_RETRIED_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How the client retries idempotent calls. `RetryPolicy(max_attempts=1)` turns retries off."""

    max_attempts: int = 5
    initial_backoff: float = 0.1
    backoff_multiplier: float = 2.0
    max_backoff: float = 5.0
    #: Fraction of each backoff drawn at random (0 = none, 1 = anywhere from 0 to twice the backoff).
    jitter: float = 0.2
    #: A server-sent RetryInfo delay longer than this is not waited for: the error is raised at once.
    max_retry_delay: float = 30.0

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt number `attempt` (from 1), before the server's RetryInfo."""
        base = min(self.max_backoff, self.initial_backoff * self.backoff_multiplier ** (attempt - 1))
        return max(0.0, base * (1 + self.jitter * random.uniform(-1.0, 1.0)))


DEFAULT_RETRY_POLICY = RetryPolicy()


@dataclass(slots=True)
class _Budget:
    """Per-call retry state that tenacity's callbacks share."""

    policy: RetryPolicy
    retryable: bool
    deadline: float

    def wait(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        delay = self.policy.backoff(state.attempt_number)
        if isinstance(error, BatonError) and error.retry_delay is not None:
            delay = max(delay, error.retry_delay.total_seconds())
        return delay

    def should_retry(self, state: tenacity.RetryCallState) -> bool:
        if not self.retryable or state.outcome is None or not state.outcome.failed:
            return False
        error = state.outcome.exception()
        if not isinstance(error, BatonError) or error.code not in _RETRIED_CODES:
            return False
        if error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and error.retry_delay is None:
            return False  # a size limit (or grpcio's own message limit): sending it again cannot help
        if error.retry_delay is not None and error.retry_delay.total_seconds() > self.policy.max_retry_delay:
            return False
        # Give up rather than start an attempt the deadline would cut short before it is sent.
        return time.monotonic() + self.wait(state) < self.deadline - 0.05

    def stop(self, state: tenacity.RetryCallState) -> bool:
        return state.attempt_number >= self.policy.max_attempts


def _kwargs(policy: RetryPolicy, retryable: bool, deadline: float) -> dict[str, object]:
    budget = _Budget(policy, retryable, deadline)
    return {
        "stop": budget.stop,
        "wait": budget.wait,
        "retry": budget.should_retry,
        "reraise": True,
    }


def retrying(policy: RetryPolicy, *, retryable: bool, deadline: float) -> tenacity.Retrying:
    """A tenacity controller for one sync call; `deadline` is a time.monotonic() value."""
    return tenacity.Retrying(**_kwargs(policy, retryable, deadline))  # type: ignore[arg-type]


def async_retrying(policy: RetryPolicy, *, retryable: bool, deadline: float) -> tenacity.AsyncRetrying:
    """A tenacity controller for one async call; `deadline` is a time.monotonic() value."""
    return tenacity.AsyncRetrying(**_kwargs(policy, retryable, deadline))  # type: ignore[arg-type]
