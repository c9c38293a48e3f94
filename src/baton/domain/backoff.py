"""Retry policies: validation, server defaults, exponential backoff with jitter, and the retry decision.

Times are seconds as floats. `attempt` counts from 1 and is the attempt that just failed, so the delay before
the second attempt is `initial_backoff`. An expired lease is a failed attempt of type `LeaseExpired`, retryable.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from baton.errors import FieldViolation

MAX_ATTEMPTS = 1000
MAX_INITIAL_BACKOFF = 86_400.0
MAX_BACKOFF_COEFFICIENT = 100.0
#: Upper bound of max_backoff, and of the wait a worker's `retry_after` can impose.
MAX_BACKOFF = 7 * 86_400.0
MAX_ERROR_TYPES = 64
MAX_ERROR_TYPE_LENGTH = 128
#: Error type of an attempt whose lease expired.
LEASE_EXPIRED = "LeaseExpired"
#: The error type of an attempt a worker hands back unfinished because it is shutting down: the step is READY
#: again at once and the attempt is not counted against max_attempts.
HANDED_BACK = "WorkerShutdown"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How failed attempts of a step are retried. As given by a caller, zero fields are unset (see `resolve`)."""

    max_attempts: int = 0
    initial_backoff: float = 0.0
    backoff_coefficient: float = 0.0
    max_backoff: float = 0.0
    jitter: float = 0.0
    non_retryable_error_types: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class RetryDefaults:
    """Server defaults for the unset fields of a retry policy (EngineConfig.default_*)."""

    max_attempts: int
    initial_backoff: float
    backoff_coefficient: float
    max_backoff: float


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """Whether a failed attempt is tried again, after how many seconds, and why (for the step's event)."""

    retry: bool
    delay: float
    reason: str
    #: The attempt does not count against max_attempts (a hand-back).
    refund: bool = False


def resolve_retry_policy(policy: RetryPolicy | None, defaults: RetryDefaults) -> RetryPolicy:
    """`policy` with its unset (zero) fields taken from `defaults`; jitter 0 means none and is kept.

    An unset max_backoff never ends up below the policy's initial_backoff.
    """
    given = policy or RetryPolicy()
    initial = given.initial_backoff or defaults.initial_backoff
    return RetryPolicy(
        max_attempts=given.max_attempts or defaults.max_attempts,
        initial_backoff=initial,
        backoff_coefficient=given.backoff_coefficient or defaults.backoff_coefficient,
        max_backoff=given.max_backoff or max(defaults.max_backoff, initial),
        jitter=given.jitter,
        non_retryable_error_types=given.non_retryable_error_types,
    )


def validate_retry_policy(
    policy: RetryPolicy, defaults: RetryDefaults, field_prefix: str = "retry_policy"
) -> list[FieldViolation]:
    """Every problem with a policy as given (zero fields unset), on paths like `<field_prefix>.max_attempts`."""
    violations: list[FieldViolation] = []

    def check(ok: bool, field: str, description: str) -> None:
        if not ok:
            violations.append(FieldViolation(f"{field_prefix}.{field}", description))

    p = policy
    check(
        p.max_attempts == 0 or 1 <= p.max_attempts <= MAX_ATTEMPTS,
        "max_attempts",
        f"must be between 1 and {MAX_ATTEMPTS}, or 0 for the default, got {p.max_attempts}",
    )
    check(
        0 <= p.initial_backoff <= MAX_INITIAL_BACKOFF,
        "initial_backoff",
        f"must be between 0 and {MAX_INITIAL_BACKOFF:g} seconds, got {p.initial_backoff:g}",
    )
    check(
        p.backoff_coefficient == 0 or 1 <= p.backoff_coefficient <= MAX_BACKOFF_COEFFICIENT,
        "backoff_coefficient",
        f"must be between 1 and {MAX_BACKOFF_COEFFICIENT:g}, or 0 for the default, got {p.backoff_coefficient:g}",
    )
    if not 0 <= p.max_backoff <= MAX_BACKOFF:
        check(False, "max_backoff", f"must be between 0 and {MAX_BACKOFF:g} seconds, got {p.max_backoff:g}")
    elif 0 <= p.initial_backoff <= MAX_INITIAL_BACKOFF:
        resolved = resolve_retry_policy(p, defaults)
        check(
            resolved.max_backoff >= resolved.initial_backoff,
            "max_backoff",
            f"must be at least initial_backoff ({resolved.initial_backoff:g} s), got {resolved.max_backoff:g}",
        )
    check(0 <= p.jitter <= 1, "jitter", f"must be between 0 and 1, got {p.jitter:g}")
    types = p.non_retryable_error_types
    check(len(types) <= MAX_ERROR_TYPES, "non_retryable_error_types", f"at most {MAX_ERROR_TYPES} error types")
    for error_type in sorted(types):
        shown = error_type if len(error_type) <= 40 else error_type[:37] + "..."
        check(
            0 < len(error_type) <= MAX_ERROR_TYPE_LENGTH,
            "non_retryable_error_types",
            f"error type {shown!r} must be 1 to {MAX_ERROR_TYPE_LENGTH} characters",
        )
    return violations


def backoff_ceiling(policy: RetryPolicy, attempt: int) -> float:
    """The backoff after failed attempt `attempt` before jitter: `min(max_backoff, initial * coefficient**(attempt-1))`.

    Non-decreasing in `attempt`, and safe for any attempt number: past the cap no power is computed.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    initial, cap, coefficient = policy.initial_backoff, policy.max_backoff, policy.backoff_coefficient
    if initial <= 0 or cap <= 0:
        return 0.0
    if cap <= initial or coefficient <= 1 or attempt == 1:
        return min(initial, cap)
    # initial * coefficient**n reaches the cap when n >= log(cap / initial) / log(coefficient); int vs float
    # comparison is exact in Python, so a huge attempt number never becomes a huge power.
    if attempt - 1 >= (math.log(cap) - math.log(initial)) / math.log(coefficient):
        return cap
    try:
        return min(cap, initial * math.pow(coefficient, attempt - 1))
    except OverflowError:  # only with a vanishingly small initial_backoff
        return cap


def backoff_delay(policy: RetryPolicy, attempt: int, *, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after failed attempt `attempt`: the ceiling with its `jitter` share drawn uniformly.

    jitter 0 waits exactly the ceiling; jitter 1 is "full jitter", uniform in [0, ceiling].
    """
    ceiling = backoff_ceiling(policy, attempt)
    jitter = min(max(policy.jitter, 0.0), 1.0)
    delay = ceiling * (1.0 - jitter) + ceiling * jitter * rand()
    return min(max(delay, 0.0), ceiling)


def decide_retry(
    policy: RetryPolicy,
    attempt: int,
    *,
    error_type: str,
    retryable: bool,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> RetryDecision:
    """Whether failed attempt `attempt` (of a resolved policy) is retried, and after how long.

    An attempt handed back (error type HANDED_BACK, retryable) is retried at once and refunded. No retry for an
    error the worker marked non-retryable, an error type listed as non-retryable, or when
    `attempt >= max_attempts`. Otherwise the delay is the backoff, or the worker's `retry_after` when longer
    (ignored unless a finite positive number; capped at MAX_BACKOFF).
    """
    if error_type == HANDED_BACK and retryable:
        return RetryDecision(True, 0.0, "handed back by a worker shutting down", refund=True)
    if not retryable:
        return RetryDecision(False, 0.0, "the error is not retryable")
    if error_type in policy.non_retryable_error_types:
        return RetryDecision(False, 0.0, f"error type {error_type!r} is not retryable")
    if attempt >= policy.max_attempts:
        return RetryDecision(False, 0.0, f"attempts exhausted ({attempt} of {policy.max_attempts})")
    delay = backoff_delay(policy, attempt, rand=rand)
    if retry_after is not None and math.isfinite(retry_after) and retry_after > delay:
        delay = min(retry_after, MAX_BACKOFF)
    return RetryDecision(True, delay, f"retrying in {delay:.3f} s (attempt {attempt + 1} of {policy.max_attempts})")


def decide_lease_expiry(
    policy: RetryPolicy, attempt: int, *, rand: Callable[[], float] = random.random
) -> RetryDecision:
    """The retry decision for attempt `attempt` whose lease expired: a retryable `LeaseExpired` failure."""
    return decide_retry(policy, attempt, error_type=LEASE_EXPIRED, retryable=True, rand=rand)
