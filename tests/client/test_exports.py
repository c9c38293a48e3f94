"""The public surface of baton.client is pinned, marked typed, and checks under `mypy --strict`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import baton.client

ROOT = Path(__file__).resolve().parents[2]

EXPECTED = [
    "AbortedError",
    "AlreadyExistsError",
    "ApiKeyCredentials",
    "AsyncClient",
    "BatonError",
    "CallInfo",
    "CallOptions",
    "CancelledError",
    "Client",
    "DataLossError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "FieldViolation",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ResourceExhaustedError",
    "ResourceInfo",
    "RetryPolicy",
    "Session",
    "TLSConfig",
    "TokenCredentials",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "UnknownError",
    "create_task_request",
    "step_completion",
    "step_failure",
]


def test_public_exports_are_pinned() -> None:
    assert baton.client.__all__ == EXPECTED
    for name in EXPECTED:
        assert getattr(baton.client, name).__module__.startswith("baton.client")
    public = {name for name in dir(baton.client) if not name.startswith("_")}
    assert public == set(EXPECTED)


def test_error_tree_is_rooted_at_baton_error() -> None:
    errors = [getattr(baton.client, name) for name in EXPECTED if name.endswith("Error")]
    assert all(issubclass(error, baton.client.BatonError) for error in errors)
    assert issubclass(baton.client.RateLimitedError, baton.client.ResourceExhaustedError)


def test_package_is_marked_typed() -> None:
    assert (ROOT / "src/baton/client/py.typed").is_file()


def test_typed_usage_passes_mypy_strict() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "tests/client/typed_usage.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
