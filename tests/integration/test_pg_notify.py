"""Two replicas on one PostgreSQL database: a poller waiting on one is woken by a task created on the other, and a
WatchTask stream on one sees the changes made through the other (LISTEN/NOTIFY), long before its max_wait."""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import grpc
from google.protobuf import duration_pb2

from baton.v1 import (
    common_pb2,
    handlers_pb2,
    handlers_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
    workers_pb2,
    workers_pb2_grpc,
)
from tests.support.server import ADMIN_KEY, RunningServer, make_config, running_server

ADMIN = (("x-api-key", ADMIN_KEY),)
NS = "replicas"


def replica(tmp_path: Path, database_url: str) -> AbstractAsyncContextManager[RunningServer]:
    return running_server(make_config(tmp_path, BATON_DATABASE_URL=database_url))


async def test_a_task_created_on_one_replica_wakes_a_poller_on_the_other(tmp_path: Path, postgresql_url: str) -> None:
    async with replica(tmp_path, postgresql_url) as one, replica(tmp_path, postgresql_url) as two:
        first, second = one.channel, two.channel
        handler = handlers_pb2.Handler(
            namespace=NS,
            name="relay",
            version="1.0.0",
            steps=[handlers_pb2.StepTemplate(name="go", step_handler="relay")],
        )
        await handlers_pb2_grpc.HandlerServiceStub(first).RegisterHandler(
            handlers_pb2.RegisterHandlerRequest(handler=handler), metadata=ADMIN, timeout=10
        )
        poll = workers_pb2.PollStepsRequest(
            namespace=NS,
            step_handlers=["relay"],
            worker_id="w",
            max_steps=1,
            max_wait=duration_pb2.Duration(seconds=20),
        )
        waiting = asyncio.ensure_future(workers_pb2_grpc.WorkerServiceStub(first).PollSteps(poll, metadata=ADMIN))
        await asyncio.sleep(0.3)  # the poll is waiting on the first replica
        started = time.monotonic()
        task = await tasks_pb2_grpc.TaskServiceStub(second).CreateTask(
            tasks_pb2.CreateTaskRequest(namespace=NS, handler_name="relay"), metadata=ADMIN, timeout=10
        )
        leases = (await asyncio.wait_for(waiting, 10)).leases
        assert [lease.task_id for lease in leases] == [task.id]
        assert time.monotonic() - started < 2.0  # woken by NOTIFY, not by the 20 s max_wait

        # A watcher on the second replica sees the completion made through the first.
        watch = tasks_pb2_grpc.TaskServiceStub(second).WatchTask(tasks_pb2.WatchTaskRequest(id=task.id), metadata=ADMIN)
        snapshot = await asyncio.wait_for(watch.read(), 10)
        assert snapshot.HasField("snapshot")
        lease = leases[0]
        completed_at = time.monotonic()
        await workers_pb2_grpc.WorkerServiceStub(first).CompleteStep(
            workers_pb2.CompleteStepRequest(
                worker_id="w",
                completions=[
                    workers_pb2.StepCompletion(
                        lease=workers_pb2.LeaseRef(step_id=lease.step_id, fencing_token=lease.fencing_token)
                    )
                ],
            ),
            metadata=ADMIN,
            timeout=10,
        )
        seen = []
        while (message := await asyncio.wait_for(watch.read(), 10)) is not grpc.aio.EOF:
            if message.HasField("event"):
                seen.append(message.event)
        assert any(event.task_state == common_pb2.TASK_STATE_COMPLETED for event in seen)
        assert time.monotonic() - completed_at < 5.0
