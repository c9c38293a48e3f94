"""One exception tree for the whole service; `server/interceptors/errors.py` maps it to google.rpc.Status.

Domain and store code raise these and know nothing of gRPC. Each class names its gRPC status code (by name, so
this module imports no gRPC) and an AIP-193 `reason`; the details each carries (field violations, retry delay,
resource) become ErrorInfo, BadRequest, RetryInfo and ResourceInfo details.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: ErrorInfo.domain of every error Baton sends.
ERROR_DOMAIN = "baton.dev"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad request field: its path (`handler.steps[2].depends_on`) and what is wrong with it."""

    field: str
    description: str


@dataclass(frozen=True, slots=True)
class ResourceRef:
    """The resource an error is about (ResourceInfo)."""

    resource_type: str
    resource_name: str
    owner: str = ""
    description: str = ""


class BatonError(Exception):
    """Base of every error a caller may see. `code` is a grpc.StatusCode name."""

    code: str = "UNKNOWN"
    reason: str = "UNKNOWN"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        resource: ResourceRef | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})
        self.resource = resource


class InvalidArgument(BatonError):
    """The request is malformed; `field_violations` say which fields and why."""

    code = "INVALID_ARGUMENT"
    reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        message: str,
        *,
        field_violations: Sequence[FieldViolation] = (),
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.field_violations = list(field_violations)


class NotFound(BatonError):
    """The resource does not exist (or the caller may not know that it does)."""

    code = "NOT_FOUND"
    reason = "NOT_FOUND"


class AlreadyExists(BatonError):
    """A resource with that identity exists already and differs."""

    code = "ALREADY_EXISTS"
    reason = "ALREADY_EXISTS"


class FailedPrecondition(BatonError):
    """The system is not in a state where the call can proceed (a stale lease, a finished task)."""

    code = "FAILED_PRECONDITION"
    reason = "FAILED_PRECONDITION"


class Aborted(BatonError):
    """A concurrency conflict, such as an etag mismatch; retry the read-modify-write."""

    code = "ABORTED"
    reason = "ABORTED"


class Unauthenticated(BatonError):
    """No valid credentials."""

    code = "UNAUTHENTICATED"
    reason = "UNAUTHENTICATED"


class PermissionDenied(BatonError):
    """Valid credentials without the permission needed."""

    code = "PERMISSION_DENIED"
    reason = "PERMISSION_DENIED"


class RateLimited(BatonError):
    """The caller's rate-limit bucket is empty; retry after `retry_after` seconds."""

    code = "RESOURCE_EXHAUSTED"
    reason = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: float, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message, metadata=metadata)
        self.retry_after = retry_after


class Overloaded(RateLimited):
    """The server is serving as many calls as it admits at once (BATON_MAX_CONCURRENT_RPCS)."""

    reason = "SERVER_OVERLOADED"


class ResourceExhausted(BatonError):
    """A size or quota limit other than the rate limit."""

    code = "RESOURCE_EXHAUSTED"
    reason = "RESOURCE_EXHAUSTED"


class Unavailable(BatonError):
    """A dependency is down or the server is draining; retry later."""

    code = "UNAVAILABLE"
    reason = "UNAVAILABLE"

    def __init__(self, message: str, *, retry_after: float | None = None, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class DeadlineExceeded(BatonError):
    """The call's deadline passed."""

    code = "DEADLINE_EXCEEDED"
    reason = "DEADLINE_EXCEEDED"


class Unimplemented(BatonError):
    """The method is not implemented."""

    code = "UNIMPLEMENTED"
    reason = "UNIMPLEMENTED"


class Internal(BatonError):
    """A bug or an unexpected failure; the caller gets a generic message and the request ID."""

    code = "INTERNAL"
    reason = "INTERNAL"
