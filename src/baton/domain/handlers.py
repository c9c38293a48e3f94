"""Handler definitions: validation for RegisterHandler, semantic versions, and the definition digest.

Validation returns every problem at once as field violations (`handler.steps[2].step_handler`), so a caller
fixes a definition in one round trip; `require_valid_handler` raises them as one InvalidArgument. The digest
hashes the definition with server defaults filled in, so registering the same definition again is recognised.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from typing import Any

from baton.domain.backoff import RetryDefaults, RetryPolicy, resolve_retry_policy, validate_retry_policy
from baton.domain.dag import shorten, validate_dag
from baton.errors import FieldViolation, InvalidArgument

NAMESPACE_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,62}", re.ASCII)
HANDLER_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,62}", re.ASCII)
STEP_HANDLER_PATTERN = re.compile(r"[a-zA-Z][a-zA-Z0-9_.:-]{0,127}", re.ASCII)
_IDENTIFIER = r"(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)"
#: MAJOR.MINOR.PATCH with an optional SemVer 2.0 pre-release (`1.2.0-rc.1`); no build metadata.
SEMVER_PATTERN = re.compile(
    rf"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:-({_IDENTIFIER}(?:\.{_IDENTIFIER})*))?", re.ASCII
)
MAX_VERSION_LENGTH = 64
#: Version numbers are stored as 32-bit integers.
MAX_VERSION_NUMBER = 2**31 - 1
MAX_DESCRIPTION_LENGTH = 1024
MIN_LEASE_TIMEOUT = 1.0
MAX_LEASE_TIMEOUT = 86_400.0
MIN_PRIORITY = -1000
MAX_PRIORITY = 1000

#: A sort key of a semantic version: (major, minor, patch, 1 for a release / 0 for a pre-release, identifiers).
VersionKey = tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]


@dataclass(frozen=True, slots=True)
class StepDefinition:
    """One step template of a handler. An unset retry policy field, a None or 0 lease timeout take the defaults."""

    name: str
    step_handler: str
    depends_on: tuple[str, ...] = ()
    retry_policy: RetryPolicy | None = None
    lease_timeout: float | None = None
    priority: int = 0
    description: str = ""


@dataclass(frozen=True, slots=True)
class HandlerDefinition:
    """One version of a handler as a caller registers it."""

    namespace: str
    name: str
    version: str
    steps: tuple[StepDefinition, ...]
    description: str = ""


@dataclass(frozen=True, slots=True)
class HandlerDefaults:
    """Server defaults for unset step fields (EngineConfig.default_*)."""

    retry: RetryDefaults
    lease_timeout: float


def parse_semver(text: str) -> VersionKey:
    """The sort key of a version (`1.10.0` > `1.9.0`, `1.0.0-rc.1` < `1.0.0`, SemVer 2.0 precedence).

    Raises ValueError if `text` is not MAJOR.MINOR.PATCH with an optional pre-release.
    """
    match = SEMVER_PATTERN.fullmatch(text)
    if match is None:
        raise ValueError(f"{shorten(text)!r} is not a semantic version (MAJOR.MINOR.PATCH[-PRERELEASE])")
    major, minor, patch, prerelease = match.groups()
    if prerelease is None:
        return int(major), int(minor), int(patch), 1, ()
    identifiers = tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in prerelease.split("."))
    return int(major), int(minor), int(patch), 0, identifiers


def validate_handler(definition: HandlerDefinition, defaults: HandlerDefaults) -> list[FieldViolation]:
    """Every problem with a handler definition, each on its field path under `handler.`."""
    violations: list[FieldViolation] = []

    def check(ok: bool, field: str, description: str) -> None:
        if not ok:
            violations.append(FieldViolation(field, description))

    d = definition
    check(
        bool(NAMESPACE_PATTERN.fullmatch(d.namespace)),
        "handler.namespace",
        f"{shorten(d.namespace)!r} is not a valid namespace: 1-63 characters of [a-z0-9-], starting with a letter",
    )
    check(
        bool(HANDLER_NAME_PATTERN.fullmatch(d.name)),
        "handler.name",
        f"{shorten(d.name)!r} is not a valid handler name: 1-63 characters of [a-z0-9_-], starting with a letter",
    )
    check(_valid_version(d.version), "handler.version", _version_problem(d.version))
    check(
        len(d.description) <= MAX_DESCRIPTION_LENGTH,
        "handler.description",
        f"at most {MAX_DESCRIPTION_LENGTH} characters",
    )
    violations.extend(validate_dag(d.steps, "handler.steps"))
    for i, step in enumerate(d.steps):
        prefix = f"handler.steps[{i}]"
        check(
            bool(STEP_HANDLER_PATTERN.fullmatch(step.step_handler)),
            f"{prefix}.step_handler",
            f"{shorten(step.step_handler)!r} is not a valid step handler: 1-128 characters of [a-zA-Z0-9_.:-], "
            "starting with a letter",
        )
        if step.retry_policy is not None:
            violations.extend(validate_retry_policy(step.retry_policy, defaults.retry, f"{prefix}.retry_policy"))
        check(
            not step.lease_timeout or MIN_LEASE_TIMEOUT <= step.lease_timeout <= MAX_LEASE_TIMEOUT,
            f"{prefix}.lease_timeout",
            f"must be between {MIN_LEASE_TIMEOUT:g} and {MAX_LEASE_TIMEOUT:g} seconds, or unset for the default",
        )
        check(
            MIN_PRIORITY <= step.priority <= MAX_PRIORITY,
            f"{prefix}.priority",
            f"must be between {MIN_PRIORITY} and {MAX_PRIORITY}, got {step.priority}",
        )
        check(
            len(step.description) <= MAX_DESCRIPTION_LENGTH,
            f"{prefix}.description",
            f"at most {MAX_DESCRIPTION_LENGTH} characters",
        )
    return violations


def _valid_version(version: str) -> bool:
    if len(version) > MAX_VERSION_LENGTH:
        return False
    try:
        key = parse_semver(version)
    except ValueError:
        return False
    return max(key[:3]) <= MAX_VERSION_NUMBER


def _version_problem(version: str) -> str:
    return (
        f"{shorten(version)!r} is not a semantic version: MAJOR.MINOR.PATCH with an optional -PRERELEASE, "
        f"numbers at most {MAX_VERSION_NUMBER}, at most {MAX_VERSION_LENGTH} characters"
    )


def require_valid_handler(definition: HandlerDefinition, defaults: HandlerDefaults) -> None:
    """Raise InvalidArgument carrying every field violation if the definition is invalid."""
    violations = validate_handler(definition, defaults)
    if violations:
        count = f"{len(violations)} problem" + ("s" if len(violations) > 1 else "")
        raise InvalidArgument(f"invalid handler definition ({count})", field_violations=violations)


def resolve_step(step: StepDefinition, defaults: HandlerDefaults) -> StepDefinition:
    """`step` with its retry policy and lease timeout filled in from the defaults."""
    return replace(
        step,
        retry_policy=resolve_retry_policy(step.retry_policy, defaults.retry),
        lease_timeout=step.lease_timeout or defaults.lease_timeout,
    )


def canonical_definition(definition: HandlerDefinition, defaults: HandlerDefaults) -> dict[str, Any]:
    """A valid definition as plain JSON data with defaults resolved: what the digest hashes, fit to store."""
    return {
        "namespace": definition.namespace,
        "name": definition.name,
        "version": definition.version,
        "description": definition.description,
        "steps": [_canonical_step(resolve_step(step, defaults)) for step in definition.steps],
    }


def _canonical_step(step: StepDefinition) -> dict[str, Any]:
    policy = step.retry_policy or RetryPolicy()
    return {
        "name": step.name,
        "depends_on": list(step.depends_on),
        "step_handler": step.step_handler,
        "retry_policy": {
            "max_attempts": int(policy.max_attempts),
            "initial_backoff": float(policy.initial_backoff),
            "backoff_coefficient": float(policy.backoff_coefficient),
            "max_backoff": float(policy.max_backoff),
            "jitter": float(policy.jitter),
            "non_retryable_error_types": sorted(policy.non_retryable_error_types),
        },
        "lease_timeout": float(step.lease_timeout or 0.0),
        "priority": int(step.priority),
        "description": step.description,
    }


def definition_digest(definition: HandlerDefinition, defaults: HandlerDefaults) -> str:
    """SHA-256 (hex) of the canonical JSON of a valid definition: equal digests mean equal effective definitions.

    Step and dependency order count (declaration order breaks scheduling ties); the set of non-retryable error
    types does not. Because defaults are resolved first, a definition that leaves a field unset matches one that
    spells out the server default, and stops matching if the server default changes.
    """
    text = json.dumps(
        canonical_definition(definition, defaults),
        sort_keys=True,
        separators=(",", ":"),
        allow_nan=False,
    )
    return hashlib.sha256(text.encode()).hexdigest()
