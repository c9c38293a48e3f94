"""The public surface of baton.worker is pinned."""

from __future__ import annotations

import baton.worker

EXPECTED = [
    "PermanentError",
    "RetryableError",
    "StepContext",
    "StepError",
    "StepHandler",
    "StepResult",
    "Worker",
    "step",
]


def test_exports_are_pinned() -> None:
    assert sorted(baton.worker.__all__) == EXPECTED
    for name in EXPECTED:
        if name != "StepResult":  # a type alias
            assert getattr(baton.worker, name).__module__.startswith("baton.worker")


def test_errors_carry_their_policy() -> None:
    retry = baton.worker.RetryableError("busy", retry_after=2.5, details={"n": 1})
    assert (retry.retryable, retry.retry_after, retry.error_type, retry.details) == (
        True,
        2.5,
        "RetryableError",
        {"n": 1},
    )
    permanent = baton.worker.PermanentError("declined", error_type="CardDeclined")
    assert (permanent.retryable, permanent.error_type) == (False, "CardDeclined")
