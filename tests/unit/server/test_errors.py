"""The error boundary's mapping of exceptions to google.rpc.Status."""

from __future__ import annotations

from google.rpc import error_details_pb2

from baton.errors import FieldViolation, InvalidArgument, NotFound, RateLimited, ResourceRef
from baton.server.interceptors.errors import MAX_FIELD_VIOLATIONS, to_status


def details(status, kind):  # type: ignore[no-untyped-def]
    found = []
    for detail in status.details:
        if detail.Is(kind.DESCRIPTOR):
            message = kind()
            detail.Unpack(message)
            found.append(message)
    return found


def test_every_status_has_error_info_and_request_info() -> None:
    status = to_status(NotFound("no such task", reason="TASK_NOT_FOUND"), "req-1")
    assert status.code == 5
    [info] = details(status, error_details_pb2.ErrorInfo)
    assert info.reason == "TASK_NOT_FOUND"
    assert info.domain == "baton.dev"
    [request] = details(status, error_details_pb2.RequestInfo)
    assert request.request_id == "req-1"


def test_resource_and_retry_details() -> None:
    status = to_status(NotFound("gone", resource=ResourceRef("baton.v1.Task", "tasks/1")), "r")
    [resource] = details(status, error_details_pb2.ResourceInfo)
    assert resource.resource_name == "tasks/1"
    limited = to_status(RateLimited("slow down", retry_after=1.5), "r")
    [retry] = details(limited, error_details_pb2.RetryInfo)
    assert retry.retry_delay.seconds == 1
    assert retry.retry_delay.nanos == 500_000_000


def test_field_violations_are_capped() -> None:
    violations = [FieldViolation(f"steps[{i}].name", "bad " * 200) for i in range(400)]
    status = to_status(InvalidArgument("bad steps", field_violations=violations), "r")
    [bad] = details(status, error_details_pb2.BadRequest)
    assert len(bad.field_violations) == MAX_FIELD_VIOLATIONS
    assert all(len(v.description) <= 200 for v in bad.field_violations)
    [info] = details(status, error_details_pb2.ErrorInfo)
    assert info.metadata["field_violations_total"] == "400"
    assert status.ByteSize() < 6000  # base64 in the trailer: under the 8 KiB default
