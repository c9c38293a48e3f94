"""Conversions between the dispatcher's leases and outcomes and the baton.v1 WorkerService protos."""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2

from baton.engine.dispatch import Completion, Failure, Lease, LeaseRef, Outcome
from baton.server.convert import duration, seconds, struct_to_dict, timestamp
from baton.v1 import common_pb2, workers_pb2

#: What a failure keeps: the error type and message are cut, details over the limit dropped.
MAX_ERROR_TYPE = 128
MAX_ERROR_MESSAGE = 4096
MAX_ERROR_DETAILS = 64 * 1024


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def lease_to_proto(lease: Lease) -> workers_pb2.Lease:
    """The Lease proto of a granted lease."""
    return workers_pb2.Lease(
        step_id=lease.step_id,
        fencing_token=lease.fencing_token,
        task_id=lease.task_id,
        step_name=lease.step_name,
        step_handler=lease.step_handler,
        namespace=lease.namespace,
        handler_name=lease.handler_name,
        handler_version=lease.handler_version,
        attempt=lease.attempt,
        max_attempts=lease.max_attempts,
        context=_struct(lease.context),
        dependency_results={name: _struct(result) for name, result in lease.dependency_results.items()},
        lease_expire_time=timestamp(lease.lease_expire_time),
        lease_timeout=duration(lease.lease_timeout),
        correlation_id=lease.correlation_id,
        request_id=lease.request_id,
        trace_context=lease.trace_context,
        schedule_time=timestamp(lease.schedule_time),
    )


def lease_ref(message: workers_pb2.LeaseRef) -> LeaseRef:
    """The dispatcher's view of a LeaseRef."""
    return LeaseRef(step_id=message.step_id, fencing_token=message.fencing_token)


def completion_from_proto(message: workers_pb2.StepCompletion, field: str = "completion") -> Completion:
    """The dispatcher's view of a StepCompletion, with the encoded size of its result."""
    return Completion(
        lease=lease_ref(message.lease),
        result=struct_to_dict(message.result, f"{field}.result"),
        result_size=message.result.ByteSize(),
    )


def failure_from_proto(message: workers_pb2.StepFailure, field: str = "failure") -> Failure:
    """The dispatcher's view of a StepFailure."""
    return Failure(
        lease=lease_ref(message.lease),
        error_type=message.error_type[:MAX_ERROR_TYPE],
        message=message.error_message[:MAX_ERROR_MESSAGE],
        retryable=message.retryable,
        retry_after=seconds(message.retry_after) if message.HasField("retry_after") else None,
        details=_details(message, f"{field}.details"),
    )


def _details(message: workers_pb2.StepFailure, field: str) -> dict[str, Any] | None:
    if not message.HasField("details"):
        return None
    if message.details.ByteSize() > MAX_ERROR_DETAILS:
        return {"dropped": f"details over {MAX_ERROR_DETAILS} bytes were not kept"}
    return struct_to_dict(message.details, field)


def outcome_to_proto(outcome: Outcome) -> workers_pb2.LeaseOutcome:
    """The LeaseOutcome proto of one lease's outcome."""
    state = outcome.step_state
    return workers_pb2.LeaseOutcome(
        step_id=outcome.step_id,
        code=outcome.code,
        message=outcome.message,
        step_state=common_pb2.StepState.Value(f"STEP_STATE_{state.value}")
        if state is not None
        else common_pb2.STEP_STATE_UNSPECIFIED,
        next_attempt_at=timestamp(outcome.next_attempt_at),
        lease_expire_time=timestamp(outcome.lease_expire_time),
        cancel_requested=outcome.cancel_requested,
    )
