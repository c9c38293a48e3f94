"""The typed Baton client SDK: `Client` (sync, grpcio) and `AsyncClient` (asyncio, grpclib).

    from baton.client import Client

    with Client.connect("127.0.0.1:50051", api_key=key) as client:
        task = client.tasks.create("shop", "order", {"order_id": 42}, request_id="order-42")

Both are built on the betterproto2 dataclasses and stubs in `baton_betterproto.baton.v1`, which the methods take
and return. Retries, deadlines and idempotency come from the contract's method options.
"""

from baton.client._async_client import AsyncClient
from baton.client._auth import ApiKeyCredentials, Session, TokenCredentials
from baton.client._client import Client
from baton.client._convert import create_task_request, step_completion, step_failure
from baton.client._errors import (
    AbortedError,
    AlreadyExistsError,
    BatonError,
    CancelledError,
    DataLossError,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    RateLimitedError,
    ResourceExhaustedError,
    ResourceInfo,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
    UnknownError,
)
from baton.client._options import CallInfo, CallOptions, TLSConfig
from baton.client._retry import RetryPolicy

__all__ = [
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
