"""The client's exception tree: one class per status code, carrying the decoded google.rpc.Status details.

The server sends ErrorInfo (reason, domain, metadata), RequestInfo (the request ID) and, where they apply,
BadRequest field violations, RetryInfo and ResourceInfo in the `grpc-status-details-bin` trailer. Both transports
(grpcio for `Client`, grpclib for `AsyncClient`) end in `error_from_status()`.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

#: Trailer holding the serialized google.rpc.Status.
STATUS_DETAILS_KEY = "grpc-status-details-bin"
REQUEST_ID_HEADER = "x-request-id"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad request field (`handler.steps[1].depends_on[0]`) and what is wrong with it."""

    field: str
    description: str


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    """The resource an error is about."""

    resource_type: str
    resource_name: str
    owner: str = ""
    description: str = ""


class BatonError(Exception):
    """A call to Baton failed. Subclasses name the status code; every one carries the decoded details."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        request_id: str = "",
        retry_delay: datetime.timedelta | None = None,
        field_violations: Sequence[FieldViolation] = (),
        resource: ResourceInfo | None = None,
        details: Sequence[Any] = (),
    ) -> None:
        super().__init__(f"{code.name}: {message}" + (f" (request ID {request_id})" if request_id else ""))
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.metadata: dict[str, str] = dict(metadata or {})
        self.request_id = request_id
        self.retry_delay = retry_delay
        self.field_violations = list(field_violations)
        self.resource = resource
        #: The decoded google.rpc detail messages, as sent.
        self.details = list(details)


class CancelledError(BatonError):
    """The call was cancelled."""


class UnknownError(BatonError):
    """The server (or the transport) reported an unknown error."""


class InvalidArgumentError(BatonError):
    """The request is malformed; `field_violations` say which fields and why."""


class DeadlineExceededError(BatonError):
    """The call's deadline passed."""


class NotFoundError(BatonError):
    """The resource does not exist (or the caller may not know that it does)."""


class AlreadyExistsError(BatonError):
    """A resource with that identity exists already and differs."""


class PermissionDeniedError(BatonError):
    """The credentials are valid but lack the permission the method needs."""


class ResourceExhaustedError(BatonError):
    """A limit was hit; `retry_delay` says when to try again, if the server said."""


class RateLimitedError(ResourceExhaustedError):
    """The caller's rate-limit bucket is empty (reason RATE_LIMITED); wait `retry_delay`."""


class FailedPreconditionError(BatonError):
    """The system is not in a state for this call (a stale lease, a finished task)."""


class AbortedError(BatonError):
    """A concurrency conflict, such as a stale etag; re-read and try again."""


class OutOfRangeError(BatonError):
    """A value is out of range."""


class UnimplementedError(BatonError):
    """The server does not implement the method."""


class InternalError(BatonError):
    """A server bug; quote `request_id` when reporting it."""


class UnavailableError(BatonError):
    """The server is unreachable, draining or missing a dependency; retried for idempotent methods."""


class DataLossError(BatonError):
    """Unrecoverable data loss."""


class UnauthenticatedError(BatonError):
    """No valid credentials."""


_BY_CODE: dict[grpc.StatusCode, type[BatonError]] = {
    grpc.StatusCode.CANCELLED: CancelledError,
    grpc.StatusCode.UNKNOWN: UnknownError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.ABORTED: AbortedError,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRangeError,
    grpc.StatusCode.UNIMPLEMENTED: UnimplementedError,
    grpc.StatusCode.INTERNAL: InternalError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DATA_LOSS: DataLossError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
}
_CODES = {code.value[0]: code for code in grpc.StatusCode}
_DETAIL_TYPES = (
    error_details_pb2.ErrorInfo,
    error_details_pb2.BadRequest,
    error_details_pb2.RetryInfo,
    error_details_pb2.RequestInfo,
    error_details_pb2.ResourceInfo,
    error_details_pb2.QuotaFailure,
    error_details_pb2.PreconditionFailure,
    error_details_pb2.DebugInfo,
    error_details_pb2.Help,
    error_details_pb2.LocalizedMessage,
)


def status_code(value: int) -> grpc.StatusCode:
    """The grpc.StatusCode of a numeric code (UNKNOWN for values outside the standard ones)."""
    return _CODES.get(value, grpc.StatusCode.UNKNOWN)


def unpack_details(anys: Iterable[any_pb2.Any]) -> list[Any]:
    """The google.rpc detail messages packed in a Status; unknown types stay packed."""
    found: list[Any] = []
    for packed in anys:
        for kind in _DETAIL_TYPES:
            if packed.Is(kind.DESCRIPTOR):
                message = kind()
                packed.Unpack(message)
                found.append(message)
                break
        else:
            found.append(packed)
    return found


def error_from_status(
    code: grpc.StatusCode, message: str, details: Sequence[Any], *, request_id: str = ""
) -> BatonError:
    """The typed error for a failed call, from its code, message and decoded detail messages."""
    fields: dict[str, Any] = {"request_id": request_id, "details": details}
    violations: list[FieldViolation] = []
    for detail in details:
        if isinstance(detail, error_details_pb2.ErrorInfo):
            fields.update(reason=detail.reason, domain=detail.domain, metadata=dict(detail.metadata))
        elif isinstance(detail, error_details_pb2.RequestInfo) and detail.request_id:
            fields["request_id"] = detail.request_id
        elif isinstance(detail, error_details_pb2.RetryInfo):
            delay = detail.retry_delay
            fields["retry_delay"] = datetime.timedelta(seconds=delay.seconds, microseconds=delay.nanos // 1000)
        elif isinstance(detail, error_details_pb2.BadRequest):
            violations.extend(FieldViolation(v.field, v.description) for v in detail.field_violations)
        elif isinstance(detail, error_details_pb2.ResourceInfo):
            fields["resource"] = ResourceInfo(
                detail.resource_type, detail.resource_name, detail.owner, detail.description
            )
    kind = _BY_CODE.get(code, UnknownError)
    if kind is ResourceExhaustedError and fields.get("reason") == "RATE_LIMITED":
        kind = RateLimitedError
    return kind(code, message, field_violations=violations, **fields)


def error_from_grpc(error: grpc.RpcError, request_id: str) -> BatonError:
    """The typed error for a grpcio RpcError (sync client), decoding its status-details trailer."""
    call: Any = error  # grpcio's errors from calls are also grpc.Call; the stubs cannot say so
    if not callable(getattr(call, "code", None)):
        return UnknownError(grpc.StatusCode.UNKNOWN, str(error), request_id=request_id)
    details: list[Any] = []
    code, message = call.code(), call.details() or ""
    for key, value in call.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            details = unpack_details(status.details)
        elif key == REQUEST_ID_HEADER and isinstance(value, str):
            request_id = value
    return error_from_status(code, message, details, request_id=request_id)
