"""Typed errors decoded from the server's google.rpc.Status, and request IDs, through both clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing

import grpc
import pytest
from grpclib.events import SendRequest, listen
from opentelemetry.sdk.trace import TracerProvider

from baton.client import (
    AlreadyExistsError,
    AsyncClient,
    BatonError,
    Client,
    DeadlineExceededError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from baton_betterproto.baton.v1 import Handler, Role, StepTemplate, WatchTaskResponse
from tests.client.conftest import NS, diamond, user
from tests.support.server import ADMIN_KEY, RunningServer

BAD_HANDLER = Handler(
    namespace=NS,
    name="broken",
    version="1.0.0",
    steps=[
        StepTemplate(name="a", step_handler="x", depends_on=["missing"]),
        StepTemplate(name="a", step_handler="x"),
    ],
)


async def viewer_key(client: AsyncClient) -> str:
    viewer = await client.users.create(user("viewer", Role.VIEWER))
    return (await client.users.create_api_key(viewer.id)).key


async def test_async_errors_carry_details(server: RunningServer) -> None:
    async with await AsyncClient.connect(server.target, api_key=ADMIN_KEY) as client:
        with pytest.raises(InvalidArgumentError) as invalid:
            await client.handlers.register(BAD_HANDLER, request_id="bad-handler-1")
        error = invalid.value
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert error.request_id == "bad-handler-1"
        assert error.domain == "baton.dev"
        assert error.reason
        assert error.field_violations == [
            FieldViolation("handler.steps[1].name", "duplicate step name 'a', first declared at handler.steps[0]"),
            FieldViolation("handler.steps[0].depends_on[0]", "unknown step 'missing'"),
        ]

        with pytest.raises(NotFoundError) as missing:
            await client.tasks.get("no-such-task")
        assert missing.value.reason == "TASK_NOT_FOUND"
        assert missing.value.resource is not None
        assert missing.value.resource.resource_name == "tasks/no-such-task"
        assert client.last_call is not None
        assert missing.value.request_id == client.last_call.request_id

        await client.handlers.register(diamond())
        await client.tasks.create(NS, "diamond", {"n": 1}, request_id="once")
        with pytest.raises(AlreadyExistsError) as reused:
            await client.tasks.create(NS, "diamond", {"n": 2}, request_id="once")
        assert reused.value.reason == "REQUEST_ID_REUSED"

        key = await viewer_key(client)
        async with await AsyncClient.connect(server.target, api_key=key) as viewer:
            assert [h.name for h in (await viewer.handlers.list(NS)).handlers] == ["diamond"]
            with pytest.raises(PermissionDeniedError) as denied:
                await viewer.tasks.create(NS, "diamond")
            assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
            assert isinstance(denied.value, BatonError)
            assert denied.value.request_id

        async with await AsyncClient.connect(server.target, api_key="bk_nope_nope") as stranger:
            with pytest.raises(UnauthenticatedError):
                await stranger.auth.who_am_i()


def _sync_errors(target: str, viewer: str) -> None:
    with Client.connect(target, api_key=ADMIN_KEY) as client:
        with pytest.raises(InvalidArgumentError) as invalid:
            client.handlers.register(BAD_HANDLER)
        fields = [v.field for v in invalid.value.field_violations]
        assert "handler.steps[0].depends_on[0]" in fields
        assert invalid.value.request_id
        assert client.last_call is not None
        assert invalid.value.request_id == client.last_call.request_id == client.last_call.server_request_id

        with pytest.raises(NotFoundError) as missing:
            client.tasks.get("no-such-task", request_id="find-me")
        assert (missing.value.request_id, missing.value.metadata) == ("find-me", {"id": "no-such-task"})
        assert str(missing.value) == "NOT_FOUND: task no-such-task not found (request ID find-me)"

    with Client.connect(target, api_key=viewer) as as_viewer, pytest.raises(PermissionDeniedError) as denied:
        as_viewer.handlers.register(diamond())
    assert denied.value.reason


async def test_sync_errors_carry_details(server: RunningServer) -> None:
    async with await AsyncClient.connect(server.target, api_key=ADMIN_KEY) as client:
        key = await viewer_key(client)
    await asyncio.to_thread(_sync_errors, server.target, key)


def _sync_request_ids(target: str) -> None:
    with Client.connect(target, api_key=ADMIN_KEY) as client:
        client.auth.who_am_i(request_id="given-id.1")
        call = client.last_call
        assert call is not None
        assert (call.method, call.request_id, call.server_request_id) == (
            "/baton.v1.AuthService/WhoAmI",
            "given-id.1",
            "given-id.1",
        )
        client.auth.who_am_i()
        made = client.last_call
        assert made is not None
        assert made.request_id != "given-id.1"
        assert made.server_request_id == made.request_id
        assert len(made.request_id) == 36
        assert ("x-request-id", made.request_id) in made.initial_metadata


async def test_request_ids_are_sent_and_echoed(server: RunningServer) -> None:
    await asyncio.to_thread(_sync_request_ids, server.target)
    async with await AsyncClient.connect(server.target, api_key=ADMIN_KEY) as client:
        await client.auth.who_am_i(request_id="async-given")
        call = client.last_call
        assert call is not None
        assert call.server_request_id == "async-given"
        assert call.attempts == 1
        await client.handlers.register(diamond())
        task = await client.tasks.create(NS, "diamond")
        made = client.last_call
        assert made is not None
        assert made.server_request_id == made.request_id
        # The server uses the call's request ID as the task's correlation ID when none is given.
        assert task.correlation_id == made.request_id


async def drain(stream: AsyncGenerator[WatchTaskResponse, None]) -> None:
    async with aclosing(stream) as items:
        async for _ in items:
            pass


async def test_deadlines_end_calls_with_a_typed_error(server: RunningServer) -> None:
    async with await AsyncClient.connect(server.target, api_key=ADMIN_KEY) as client:
        await client.handlers.register(diamond())
        task = await client.tasks.create(NS, "diamond")
        started = asyncio.get_running_loop().time()
        with pytest.raises(DeadlineExceededError):
            await drain(client.tasks.watch(task.id, timeout=0.3))
        assert asyncio.get_running_loop().time() - started < 2

    def sync() -> None:
        with Client.connect(server.target, api_key=ADMIN_KEY) as sync_client, pytest.raises(DeadlineExceededError):
            list(sync_client.tasks.watch(task.id, timeout=0.3))

    await asyncio.to_thread(sync)


async def test_async_client_propagates_trace_context(server: RunningServer) -> None:
    sent: list[dict[str, str]] = []

    async def record(event: SendRequest) -> None:
        sent.append(dict(event.metadata))

    provider = TracerProvider()
    async with await AsyncClient.connect(server.target, api_key=ADMIN_KEY) as client:
        listen(client.channel, SendRequest, record)
        with provider.get_tracer("test").start_as_current_span("caller") as span:
            await client.auth.who_am_i()
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert sent[-1]["traceparent"].split("-")[1] == trace_id
