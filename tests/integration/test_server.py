"""The server as a client sees it: health, reflection v1 and v1alpha, UNIMPLEMENTED RPCs, size limits."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from baton.server.policy import service_names
from baton.v1 import tasks_pb2, tasks_pb2_grpc
from tests.support.server import RunningServer

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def check(channel: grpc.aio.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(response.status)


async def test_readiness_and_liveness_are_serving(server: RunningServer) -> None:
    assert await check(server.channel, "") == SERVING
    assert await check(server.channel, "liveness") == SERVING


async def test_every_baton_service_has_a_health_status(server: RunningServer) -> None:
    for name in service_names():
        assert await check(server.channel, name) == SERVING, name


async def test_unknown_health_service_is_not_found(server: RunningServer) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await check(server.channel, "no.such.Service")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_readiness_turns_not_serving_when_draining(server: RunningServer) -> None:
    await server.server.health.drain()
    assert await check(server.channel, "") == NOT_SERVING
    assert await check(server.channel, "baton.v1.TaskService") == NOT_SERVING


async def test_readiness_follows_the_database(server: RunningServer) -> None:
    # Replace the database with an empty one: reachable, but its migrations are no longer current.
    await server.server.store.close()
    path = Path(server.config.storage.database_url.get_secret_value().removeprefix("sqlite+aiosqlite:///"))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    assert await server.server.health.refresh() is False
    assert await check(server.channel, "") == NOT_SERVING


async def _reflect(
    channel: grpc.aio.Channel, service: str, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    call = channel.stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    stream = call(iter([request]), timeout=5)
    responses = [response async for response in stream]
    assert len(responses) == 1
    return responses[0]


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
async def test_reflection_lists_every_service(server: RunningServer, version: str) -> None:
    service = f"grpc.reflection.{version}.ServerReflection"
    response = await _reflect(server.channel, service, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in response.list_services_response.service}
    assert set(service_names()) <= names
    assert {"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} <= names
    assert "grpc.reflection.v1alpha.ServerReflection" in names


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
async def test_reflection_describes_task_service(server: RunningServer, version: str) -> None:
    service = f"grpc.reflection.{version}.ServerReflection"
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="baton.v1.TaskService")
    response = await _reflect(server.channel, service, request)
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in response.file_descriptor_response.file_descriptor_proto
    ]
    tasks_file = next(f for f in files if f.name == "baton/v1/tasks.proto")
    methods = {m.name for s in tasks_file.service for m in s.method}
    assert {"CreateTask", "WatchTask", "GetTaskGraph"} <= methods


async def test_reflection_v1_describes_itself(server: RunningServer) -> None:
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="grpc.reflection.v1.ServerReflection")
    response = await _reflect(server.channel, "grpc.reflection.v1.ServerReflection", request)
    names = [
        descriptor_pb2.FileDescriptorProto.FromString(raw).package
        for raw in response.file_descriptor_response.file_descriptor_proto
    ]
    assert "grpc.reflection.v1" in names


async def test_oversized_message_is_resource_exhausted(server: RunningServer) -> None:
    stub = tasks_pb2_grpc.TaskServiceStub(server.channel)
    huge = tasks_pb2.CreateTaskRequest(namespace="a", correlation_id="x" * (5 * 1024 * 1024))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateTask(huge, timeout=5)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The server is still fine afterwards.
    assert await check(server.channel, "") == SERVING


async def test_health_watch_streams_status_changes(server: RunningServer) -> None:
    stub = health_pb2_grpc.HealthStub(server.channel)
    call = stub.Watch(health_pb2.HealthCheckRequest(service=""))
    first = await asyncio.wait_for(call.read(), 5)
    assert first.status == SERVING
    await server.server.health.drain()
    second = await asyncio.wait_for(call.read(), 5)
    assert second.status == NOT_SERVING
    call.cancel()
