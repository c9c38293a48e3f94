"""The client's reading of the contract and its pure helpers: retryability from the descriptors, token expiry,
targets, and status decoding."""

from __future__ import annotations

import base64
import datetime
import json
import time

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2

from baton.client import RateLimitedError, ResourceExhaustedError, RetryPolicy, UnavailableError
from baton.client._auth import token_expiry
from baton.client._errors import error_from_status
from baton.client._methods import METHODS, spec
from baton.client._options import parse_target
from baton.client._retry import retrying
from baton.v1 import admin_pb2, auth_pb2, handlers_pb2, tasks_pb2, users_pb2, workers_pb2
from baton_betterproto.baton.v1 import BatchCreateTasksRequest, CreateTaskRequest, GetTaskRequest


def test_every_rpc_has_a_spec_with_the_contract_deadline() -> None:
    files = (handlers_pb2, tasks_pb2, workers_pb2, auth_pb2, users_pb2, admin_pb2)
    names = {
        f"/{service.full_name}/{method.name}"
        for module in files
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert set(METHODS) == names
    assert spec("TaskService", "WatchTask").default_timeout == 3600
    assert spec("WorkerService", "PollSteps").default_timeout == 70
    assert spec("AuthService", "Login").public
    assert not spec("AuthService", "WhoAmI").public


def test_retryable_follows_idempotency_level_and_keys() -> None:
    assert spec("TaskService", "GetTask").retryable(GetTaskRequest(id="t"))  # NO_SIDE_EFFECTS
    assert spec("WorkerService", "Heartbeat").retryable(None)  # IDEMPOTENT, no key field
    assert not spec("WorkerService", "PollSteps").retryable(None)  # IDEMPOTENCY_UNKNOWN
    assert not spec("AuthService", "Login").retryable(None)
    create = spec("TaskService", "CreateTask")
    assert not create.retryable(CreateTaskRequest(namespace="n"))
    assert create.retryable(CreateTaskRequest(namespace="n", request_id="k"))
    batch = spec("TaskService", "BatchCreateTasks")
    keyed = [CreateTaskRequest(request_id="a"), CreateTaskRequest(request_id="b")]
    assert batch.retryable(BatchCreateTasksRequest(requests=keyed))
    assert not batch.retryable(BatchCreateTasksRequest(requests=[*keyed, CreateTaskRequest()]))


def test_token_expiry_reads_exp_without_verifying() -> None:
    def segment(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    token = f"{segment({'alg': 'HS256'})}.{segment({'sub': 'u', 'exp': 1_900_000_000})}.c2ln"
    assert token_expiry(token) == 1_900_000_000
    assert token_expiry("opaque") is None
    assert token_expiry(f"{segment({})}.{segment({'sub': 'u'})}.x") is None
    assert token_expiry("a.!!!.b") is None


@pytest.mark.parametrize(
    ("target", "expected"),
    [("127.0.0.1:50051", ("127.0.0.1", 50051)), ("baton", ("baton", 50051)), ("[::1]:7000", ("::1", 7000))],
)
def test_parse_target(target: str, expected: tuple[str, int]) -> None:
    assert parse_target(target) == expected


def test_status_details_decode_into_the_tree() -> None:
    details = [
        error_details_pb2.ErrorInfo(reason="RATE_LIMITED", domain="baton.dev", metadata={"cost": "1"}),
        error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=1, nanos=500_000_000)),
        error_details_pb2.RequestInfo(request_id="r-1"),
    ]
    error = error_from_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", details)
    assert isinstance(error, RateLimitedError)
    assert (error.reason, error.domain, error.metadata, error.request_id) == (
        "RATE_LIMITED",
        "baton.dev",
        {"cost": "1"},
        "r-1",
    )
    assert error.retry_delay == datetime.timedelta(seconds=1.5)
    plain = error_from_status(grpc.StatusCode.UNAVAILABLE, "down", [], request_id="mine")
    assert isinstance(plain, UnavailableError)
    assert plain.request_id == "mine"
    assert plain.retry_delay is None


def test_backoff_grows_within_jitter_and_cap() -> None:
    policy = RetryPolicy(initial_backoff=0.1, backoff_multiplier=2, max_backoff=0.5, jitter=0.2)
    for attempt, base in ((1, 0.1), (2, 0.2), (3, 0.4), (6, 0.5)):
        assert all(base * 0.8 <= policy.backoff(attempt) <= base * 1.2 for _ in range(50))


def test_resource_exhausted_without_retry_info_is_not_retried() -> None:
    attempts = 0

    def too_big() -> None:
        nonlocal attempts
        attempts += 1
        raise error_from_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "message larger than max", [])

    controller = retrying(RetryPolicy(initial_backoff=0.01), retryable=True, deadline=time.monotonic() + 5)
    with pytest.raises(ResourceExhaustedError):
        controller(too_big)
    assert attempts == 1


def test_unavailable_is_retried_up_to_max_attempts() -> None:
    attempts = 0

    def down() -> None:
        nonlocal attempts
        attempts += 1
        raise error_from_status(grpc.StatusCode.UNAVAILABLE, "down", [])

    controller = retrying(
        RetryPolicy(max_attempts=3, initial_backoff=0.01), retryable=True, deadline=time.monotonic() + 5
    )
    with pytest.raises(UnavailableError):
        controller(down)
    assert attempts == 3
