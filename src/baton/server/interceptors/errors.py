"""The error boundary: exceptions become google.rpc.Status with details, in exactly one place.

Every status carries ErrorInfo (reason, domain, metadata) and RequestInfo (the request ID); BadRequest field
violations, RetryInfo and ResourceInfo are added where the error has them. Anything that is not a BatonError is a
bug: the caller gets INTERNAL with a generic message and the request ID, the stack goes to the log.
"""

from __future__ import annotations

import asyncio
import math

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from sqlalchemy.exc import InterfaceError, OperationalError

from baton.errors import (
    ERROR_DOMAIN,
    BatonError,
    DeadlineExceeded,
    InvalidArgument,
    RateLimited,
    Unavailable,
    Unimplemented,
)
from baton.observability.logging import get_logger
from baton.server.interceptors.base import Call
from baton.store.errors import StorageError

log = get_logger("baton.errors")

RETRY_AFTER_HEADER = "retry-after"
#: Field violations sent in one BadRequest; ErrorInfo metadata `field_violations_total` tells when more exist.
MAX_FIELD_VIOLATIONS = 20


def _duration(seconds: float) -> duration_pb2.Duration:
    whole = int(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=int((seconds - whole) * 1e9))


def to_status(error: BatonError, request_id: str, serving_data: str = "") -> status_pb2.Status:
    """The google.rpc.Status for a BatonError."""
    code = grpc.StatusCode[error.code]
    status = status_pb2.Status(code=code.value[0], message=error.message)
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata)
    status.details.add().Pack(info)
    if isinstance(error, InvalidArgument) and error.field_violations:
        # Trailers are bounded (8 KiB by default): the first violations are enough to act on.
        shown = error.field_violations[:MAX_FIELD_VIOLATIONS]
        if len(error.field_violations) > len(shown):
            info.metadata["field_violations_total"] = str(len(error.field_violations))
            status.details[0].Pack(info)
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description[:200])
                for v in shown
            ]
        )
        status.details.add().Pack(bad)
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=_duration(retry_after)))
    if error.resource is not None:
        resource = error_details_pb2.ResourceInfo(
            resource_type=error.resource.resource_type,
            resource_name=error.resource.resource_name,
            owner=error.resource.owner,
            description=error.resource.description,
        )
        status.details.add().Pack(resource)
    status.details.add().Pack(error_details_pb2.RequestInfo(request_id=request_id, serving_data=serving_data))
    return status


def _internal(request_id: str) -> status_pb2.Status:
    status = status_pb2.Status(
        code=code_pb2.INTERNAL, message=f"internal error; quote request ID {request_id} when reporting it"
    )
    status.details.add().Pack(
        error_details_pb2.ErrorInfo(reason="INTERNAL", domain=ERROR_DOMAIN, metadata={"request_id": request_id})
    )
    status.details.add().Pack(error_details_pb2.RequestInfo(request_id=request_id))
    return status


class ErrorBoundary:
    """Maps exceptions to statuses and aborts the RPC with them."""

    def classify(self, call: Call, error: BaseException) -> status_pb2.Status:
        """The status for `error`, logging unexpected ones with their stack."""
        if isinstance(error, NotImplementedError):
            # A generated base servicer: the method's behaviour is not built yet.
            error = Unimplemented(f"{call.policy.full_method} is not implemented yet")
        elif isinstance(error, StorageError | OperationalError | InterfaceError):
            log.warning("rpc.storage_unavailable", method=call.policy.full_method, error=type(error).__name__)
            error = Unavailable("the database is unavailable; retry shortly", retry_after=1.0)
        if isinstance(error, TimeoutError | asyncio.TimeoutError):
            error = DeadlineExceeded(
                f"deadline of {call.policy.default_deadline_seconds:g}s exceeded (the contract's default; "
                "send a deadline to choose another)"
            )
        if isinstance(error, BatonError):
            return to_status(error, call.request_id)
        log.error(
            "rpc.unexpected_error",
            method=call.policy.full_method,
            request_id=call.request_id,
            exc_info=error,
        )
        return _internal(call.request_id)

    async def abort(self, call: Call, error: BaseException) -> None:
        """Record the final status on the call and abort the RPC with it (raises grpc.aio.AbortError)."""
        status = self.classify(call, error)
        call.code = grpc.StatusCode[code_pb2.Code.Name(status.code)]
        call.details = status.message
        call.error = error
        trailing = list(rpc_status.to_status(status).trailing_metadata)
        if isinstance(error, RateLimited | Unavailable) and error.retry_after is not None:
            trailing.append((RETRY_AFTER_HEADER, str(max(1, math.ceil(error.retry_after)))))
        trailing.extend(call.trailing_metadata)
        await call.context.abort(call.code, status.message, tuple(trailing))

    def record(self, call: Call, error: BaseException) -> None:
        """Set the call's code for an error that already ended the RPC."""
        status = self.classify(call, error)
        call.code = grpc.StatusCode[code_pb2.Code.Name(status.code)]
        call.details = status.message
        call.error = error
