"""Small helpers shared by the engine tests: proto builders, stubs, and a task's event log replayed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import duration_pb2, json_format, struct_pb2

from baton.v1 import handlers_pb2, handlers_pb2_grpc, tasks_pb2, tasks_pb2_grpc, workers_pb2, workers_pb2_grpc

Metadata = tuple[tuple[str, str], ...]
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION.value[0]


def seconds(value: float) -> duration_pb2.Duration:
    """A Duration of `value` seconds."""
    whole = int(value)
    return duration_pb2.Duration(seconds=whole, nanos=round((value - whole) * 1e9))


def struct(values: dict[str, Any] | None = None, **more: Any) -> struct_pb2.Struct:
    """A Struct of a dict."""
    result = struct_pb2.Struct()
    result.update({**(values or {}), **more})
    return result


def as_dict(value: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a dict."""
    return json_format.MessageToDict(value)


def ref(lease: workers_pb2.Lease, token: int | None = None) -> workers_pb2.LeaseRef:
    """The LeaseRef of a lease (with another fencing token when given)."""
    return workers_pb2.LeaseRef(step_id=lease.step_id, fencing_token=lease.fencing_token if token is None else token)


async def register(
    channel: grpc.aio.Channel, metadata: Metadata, namespace: str, name: str, steps: Sequence[handlers_pb2.StepTemplate]
) -> handlers_pb2.Handler:
    """Register version 1.0.0 of a handler."""
    handler = handlers_pb2.Handler(namespace=namespace, name=name, version="1.0.0", steps=steps)
    stub = handlers_pb2_grpc.HandlerServiceStub(channel)
    registered: handlers_pb2.Handler = await stub.RegisterHandler(
        handlers_pb2.RegisterHandlerRequest(handler=handler), metadata=metadata, timeout=10
    )
    return registered


def task_stub(channel: grpc.aio.Channel) -> tasks_pb2_grpc.TaskServiceStub:
    return tasks_pb2_grpc.TaskServiceStub(channel)


def worker_stub(channel: grpc.aio.Channel) -> workers_pb2_grpc.WorkerServiceStub:
    return workers_pb2_grpc.WorkerServiceStub(channel)


async def get_task(channel: grpc.aio.Channel, metadata: Metadata, task_id: str) -> tasks_pb2.Task:
    task: tasks_pb2.Task = await task_stub(channel).GetTask(
        tasks_pb2.GetTaskRequest(id=task_id), metadata=metadata, timeout=10
    )
    return task


async def event_log(channel: grpc.aio.Channel, metadata: Metadata, task_id: str) -> list[tasks_pb2.TaskEvent]:
    """Every stored event of a finished (COMPLETED or FAILED) task after the first ("task created"), replayed by
    WatchTask, in sequence order; the sequences must run on without a gap."""
    call = task_stub(channel).WatchTask(
        tasks_pb2.WatchTaskRequest(id=task_id, after_sequence=1), metadata=metadata, timeout=20
    )
    events = []
    async for message in call:
        if message.WhichOneof("kind") == "event":
            events.append(message.event)
    sequences = [event.sequence for event in events]
    assert sequences == list(range(2, 2 + len(events))), f"task {task_id}: event sequences {sequences}"
    return events
