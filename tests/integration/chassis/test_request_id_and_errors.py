"""Request IDs (accepted when sane, made otherwise, echoed in the initial metadata) and the error model: every
error is a google.rpc.Status with ErrorInfo and a RequestInfo naming the echoed request ID."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2

from baton.v1 import admin_pb2, admin_pb2_grpc, auth_pb2, auth_pb2_grpc, tasks_pb2, tasks_pb2_grpc, users_pb2
from baton.v1 import users_pb2_grpc as users_grpc
from tests.integration.chassis.conftest import Metadata, create_account, metadata_value, rich
from tests.support.server import RunningServer

HEADER = "x-request-id"


def whoami(running: RunningServer, metadata: Metadata) -> Any:
    return auth_pb2_grpc.AuthServiceStub(running.channel).WhoAmI(auth_pb2.WhoAmIRequest(), metadata=metadata, timeout=5)


async def echoed(call: Any) -> str:
    [value] = metadata_value(await call.initial_metadata(), HEADER)
    return value


def is_fresh_id(value: str) -> bool:
    return len(value) == 36 and uuid.UUID(value).version == 7 and str(uuid.UUID(value)) == value


async def test_sane_request_id_is_echoed(server: RunningServer) -> None:
    call = whoami(server, (*server.admin, (HEADER, "abc-123.X:y")))
    assert await echoed(call) == "abc-123.X:y"
    await call
    longest = "a" * 128
    call = whoami(server, (*server.admin, (HEADER, longest)))
    assert await echoed(call) == longest
    await call


async def test_concurrent_calls_each_see_their_own_metadata(server: RunningServer) -> None:
    # The chain takes each call's metadata from grpc's method lookup, kept per RPC task: with 200 calls in
    # flight, half with a bad key, every call must get its own request ID back and its own credentials judged.
    calls = [
        whoami(server, ((*server.admin,) if n % 2 == 0 else (("x-api-key", "bk_wrong"),)) + ((HEADER, f"rid-{n}"),))
        for n in range(200)
    ]
    for n, call in enumerate(calls):
        assert await echoed(call) == f"rid-{n}"
        if n % 2 == 0:
            await call
        else:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("given", ["a" * 129, "has space", "semi;colon", "slash/y", "", "percent%sign"])
async def test_insane_request_id_is_replaced(server: RunningServer, given: str) -> None:
    call = whoami(server, (*server.admin, (HEADER, given)))
    value = await echoed(call)
    assert value != given
    assert is_fresh_id(value), value
    await call


async def test_missing_request_id_is_made(server: RunningServer) -> None:
    first, second = whoami(server, server.admin), whoami(server, server.admin)
    ids = [await echoed(first), await echoed(second)]
    assert all(is_fresh_id(value) for value in ids)
    assert ids[0] != ids[1]
    await first
    await second


def _cases(viewer: Metadata) -> list[tuple[str, grpc.StatusCode, Callable[[RunningServer, Metadata], Any]]]:
    def users(running: RunningServer) -> users_grpc.UserServiceStub:
        return users_grpc.UserServiceStub(running.channel)

    return [
        ("no credentials", grpc.StatusCode.UNAUTHENTICATED, lambda r, m: whoami(r, m)),
        ("bad key", grpc.StatusCode.UNAUTHENTICATED, lambda r, m: whoami(r, (*m, ("x-api-key", "k" * 40)))),
        ("bad bearer", grpc.StatusCode.UNAUTHENTICATED, lambda r, m: whoami(r, (*m, ("authorization", "Bearer x")))),
        (
            "not allowed",
            grpc.StatusCode.PERMISSION_DENIED,
            lambda r, m: admin_pb2_grpc.AdminServiceStub(r.channel).GetStatus(
                admin_pb2.GetStatusRequest(), metadata=(*m, *viewer)
            ),
        ),
        (
            "invalid",
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda r, m: users(r).CreateUser(users_pb2.CreateUserRequest(), metadata=(*m, *r.admin)),
        ),
        (
            "missing",
            grpc.StatusCode.NOT_FOUND,
            lambda r, m: users(r).GetUser(users_pb2.GetUserRequest(id=str(uuid.uuid4())), metadata=(*m, *r.admin)),
        ),
        (
            "public, invalid",
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda r, m: auth_pb2_grpc.AuthServiceStub(r.channel).Login(auth_pb2.LoginRequest(), metadata=m),
        ),
        (
            "public, refused",
            grpc.StatusCode.UNAUTHENTICATED,
            lambda r, m: auth_pb2_grpc.AuthServiceStub(r.channel).RefreshToken(
                auth_pb2.RefreshTokenRequest(refresh_token="nope"), metadata=m
            ),
        ),
    ]


@pytest.mark.parametrize("given", [None, "req-42", "bad id!"])
async def test_every_error_carries_error_info_and_the_request_id(server: RunningServer, given: str | None) -> None:
    viewer = (await create_account(server, "svc-viewer", "viewer")).metadata
    sent: Metadata = () if given is None else ((HEADER, given),)
    for name, code, start in _cases(viewer):
        call = start(server, sent)
        request_id = await echoed(call)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == code, (name, caught.value.details())
        error = rich(caught.value)
        assert error.info.domain == "baton.dev", name
        assert error.info.reason, name
        assert error.request_id == request_id, name
        assert metadata_value(caught.value.initial_metadata(), HEADER) == [request_id]
        if given == "req-42":
            assert request_id == "req-42"
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            assert error.has(error_details_pb2.BadRequest), name


async def test_engine_rpcs_still_return_the_request_id(server: RunningServer) -> None:
    stub = tasks_pb2_grpc.TaskServiceStub(server.channel)
    call = stub.GetTask(tasks_pb2.GetTaskRequest(id=str(uuid.uuid4())), metadata=(*server.admin, (HEADER, "eng-1")))
    assert await echoed(call) == "eng-1"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() != grpc.StatusCode.OK
    error = rich(caught.value)
    assert error.request_id == "eng-1"
    assert error.info.domain == "baton.dev"
    stream = stub.WatchTask(tasks_pb2.WatchTaskRequest(id=str(uuid.uuid4())), metadata=(*server.admin, (HEADER, "w-1")))
    assert await echoed(stream) == "w-1"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stream:
            pass
    assert rich(caught.value).request_id == "w-1"


async def test_engine_rpcs_answer_not_found_with_details(server: RunningServer) -> None:
    stub = tasks_pb2_grpc.TaskServiceStub(server.channel)
    call = stub.RetryTask(tasks_pb2.RetryTaskRequest(id="x"), metadata=server.admin)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    error = rich(caught.value)
    assert error.info.reason == "TASK_NOT_FOUND"
    assert error.request_id


async def test_internal_errors_do_not_leak_details(server: RunningServer) -> None:
    """Whatever an unexpected failure was, the caller sees a generic message quoting the request ID."""
    stub = tasks_pb2_grpc.TaskServiceStub(server.channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetTask(tasks_pb2.GetTaskRequest(id="x"), metadata=(*server.admin, (HEADER, "leak-1")))
    if caught.value.code() == grpc.StatusCode.INTERNAL:
        assert "NotImplementedError" not in (caught.value.details() or "")
        assert "Traceback" not in (caught.value.details() or "")
        assert "leak-1" in (caught.value.details() or "")
