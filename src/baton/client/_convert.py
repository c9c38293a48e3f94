"""Small conversions from Python values to the betterproto2 messages the requests carry."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from baton_betterproto.baton.v1 import CreateTaskRequest, Lease, LeaseRef, StepCompletion, StepFailure
from baton_betterproto.google.protobuf import FieldMask, Struct


def struct(value: Mapping[str, Any] | Struct | None) -> Struct | None:
    """A google.protobuf.Struct from a JSON-like mapping (a Struct passes through)."""
    if value is None or isinstance(value, Struct):
        return value
    return Struct.from_dict(dict(value))


def field_mask(paths: Sequence[str]) -> FieldMask | None:
    """A FieldMask of `paths`, or None when empty."""
    return FieldMask(paths=list(paths)) if paths else None


def seconds(value: float | datetime.timedelta | None) -> datetime.timedelta | None:
    """A timedelta from seconds (a timedelta passes through)."""
    if value is None or isinstance(value, datetime.timedelta):
        return value
    return datetime.timedelta(seconds=value)


def create_task_request(
    namespace: str,
    handler: str,
    context: Mapping[str, Any] | Struct | None = None,
    *,
    version: str = "",
    tags: Sequence[str] = (),
    priority: int = 0,
    correlation_id: str = "",
    request_id: str = "",
) -> CreateTaskRequest:
    """A CreateTaskRequest from Python values (for `tasks.create` and `tasks.batch_create`)."""
    return CreateTaskRequest(
        namespace=namespace,
        handler_name=handler,
        handler_version=version,
        context=struct(context),
        tags=list(tags),
        priority=priority,
        correlation_id=correlation_id,
        request_id=request_id,
    )


def step_completion(lease: Lease | LeaseRef, result: Mapping[str, Any] | Struct | None = None) -> StepCompletion:
    """A StepCompletion of a lease with its result (for `workers.complete`)."""
    ref = lease if isinstance(lease, LeaseRef) else LeaseRef(step_id=lease.step_id, fencing_token=lease.fencing_token)
    return StepCompletion(lease=ref, result=struct(result))


def step_failure(
    lease: Lease | LeaseRef,
    error_type: str,
    message: str = "",
    *,
    retryable: bool = True,
    retry_after: float | datetime.timedelta | None = None,
    details: Mapping[str, Any] | Struct | None = None,
) -> StepFailure:
    """A StepFailure of a lease (for `workers.fail`); `retryable=False` fails the step at once."""
    ref = lease if isinstance(lease, LeaseRef) else LeaseRef(step_id=lease.step_id, fencing_token=lease.fencing_token)
    return StepFailure(
        lease=ref,
        error_type=error_type,
        error_message=message,
        retryable=retryable,
        retry_after=seconds(retry_after),
        details=struct(details),
    )
