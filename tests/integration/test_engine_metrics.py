"""The engine's domain metrics through the real server: tasks created and finished by outcome, the ready queue,
active leases and active pollers, read from the Prometheus registry the /metrics endpoint serves."""

from __future__ import annotations

import asyncio

from google.protobuf import duration_pb2
from prometheus_client import REGISTRY

from baton.v1 import (
    common_pb2,
    handlers_pb2,
    handlers_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
    workers_pb2,
    workers_pb2_grpc,
)
from tests.support.server import RunningServer

NS = "metrics-ns"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def register(running: RunningServer, name: str) -> None:
    handler = handlers_pb2.Handler(
        namespace=NS, name=name, version="1.0.0", steps=[handlers_pb2.StepTemplate(name="only", step_handler=name)]
    )
    await handlers_pb2_grpc.HandlerServiceStub(running.channel).RegisterHandler(
        handlers_pb2.RegisterHandlerRequest(handler=handler), metadata=running.admin, timeout=10
    )


async def create(running: RunningServer, handler: str) -> str:
    task = await tasks_pb2_grpc.TaskServiceStub(running.channel).CreateTask(
        tasks_pb2.CreateTaskRequest(namespace=NS, handler_name=handler), metadata=running.admin, timeout=10
    )
    return task.id


async def poll(running: RunningServer, handler: str, max_steps: int = 10) -> list[workers_pb2.Lease]:
    response = await workers_pb2_grpc.WorkerServiceStub(running.channel).PollSteps(
        workers_pb2.PollStepsRequest(
            namespace=NS,
            step_handlers=[handler],
            worker_id="metrics-worker",
            max_steps=max_steps,
            max_wait=duration_pb2.Duration(nanos=100_000_000),
        ),
        metadata=running.admin,
        timeout=10,
    )
    return list(response.leases)


async def test_tasks_created_and_finished_by_outcome(server: RunningServer) -> None:
    await register(server, "m-outcomes")
    created = value("baton_tasks_created_total", namespace=NS, handler="m-outcomes")
    finished = {
        o: value("baton_tasks_finished_total", namespace=NS, handler="m-outcomes", outcome=o)
        for o in ("completed", "failed", "cancelled")
    }
    ids = [await create(server, "m-outcomes") for _ in range(3)]
    assert value("baton_tasks_created_total", namespace=NS, handler="m-outcomes") == created + 3

    workers = workers_pb2_grpc.WorkerServiceStub(server.channel)
    await tasks_pb2_grpc.TaskServiceStub(server.channel).CancelTask(
        tasks_pb2.CancelTaskRequest(id=ids[2]), metadata=server.admin, timeout=10
    )
    leases = await poll(server, "m-outcomes")
    assert sorted(lease.task_id for lease in leases) == sorted(ids[:2])
    by_task = {lease.task_id: lease for lease in leases}
    ok, bad = by_task[ids[0]], by_task[ids[1]]
    await workers.CompleteStep(
        workers_pb2.CompleteStepRequest(
            worker_id="metrics-worker",
            completions=[
                workers_pb2.StepCompletion(
                    lease=workers_pb2.LeaseRef(step_id=ok.step_id, fencing_token=ok.fencing_token)
                )
            ],
        ),
        metadata=server.admin,
        timeout=10,
    )
    await workers.FailStep(
        workers_pb2.FailStepRequest(
            worker_id="metrics-worker",
            failures=[
                workers_pb2.StepFailure(
                    lease=workers_pb2.LeaseRef(step_id=bad.step_id, fencing_token=bad.fencing_token),
                    error_type="Boom",
                    retryable=False,
                )
            ],
        ),
        metadata=server.admin,
        timeout=10,
    )
    for outcome, expected in (("completed", 1), ("failed", 1), ("cancelled", 1)):
        now = value("baton_tasks_finished_total", namespace=NS, handler="m-outcomes", outcome=outcome)
        assert now == finished[outcome] + expected, outcome
    # Idempotent re-creation does not count twice.
    request = tasks_pb2.CreateTaskRequest(namespace=NS, handler_name="m-outcomes", request_id="same-one")
    stub = tasks_pb2_grpc.TaskServiceStub(server.channel)
    before = value("baton_tasks_created_total", namespace=NS, handler="m-outcomes")
    await stub.CreateTask(request, metadata=server.admin, timeout=10)
    await stub.CreateTask(request, metadata=server.admin, timeout=10)
    assert value("baton_tasks_created_total", namespace=NS, handler="m-outcomes") == before + 1


async def test_ready_queue_and_active_leases_are_sampled(server: RunningServer) -> None:
    await register(server, "m-queue")
    for _ in range(5):
        await create(server, "m-queue")
    sampler = server.server.runtime.sampler
    await sampler.sample()
    assert value("baton_ready_steps", namespace=NS) == 5
    assert value("baton_active_leases", namespace=NS) == 0
    leases = await poll(server, "m-queue", max_steps=2)
    assert len(leases) == 2
    await sampler.sample()
    assert value("baton_ready_steps", namespace=NS) == 3
    assert value("baton_active_leases", namespace=NS) == 2


async def test_active_pollers_count_waiting_long_polls(server: RunningServer) -> None:
    await register(server, "m-pollers")
    base = value("baton_active_pollers", namespace=NS)
    stub = workers_pb2_grpc.WorkerServiceStub(server.channel)
    request = workers_pb2.PollStepsRequest(
        namespace=NS,
        step_handlers=["m-pollers"],
        worker_id="w",
        max_steps=1,
        max_wait=duration_pb2.Duration(seconds=5),
    )
    waiting = [asyncio.ensure_future(stub.PollSteps(request, metadata=server.admin, timeout=10)) for _ in range(3)]
    for _ in range(100):
        if value("baton_active_pollers", namespace=NS) == base + 3:
            break
        await asyncio.sleep(0.02)
    assert value("baton_active_pollers", namespace=NS) == base + 3
    for _ in range(3):
        await create(server, "m-pollers")
    answered = await asyncio.gather(*waiting)
    assert sum(len(r.leases) for r in answered) == 3
    assert value("baton_active_pollers", namespace=NS) == base


async def test_a_waiting_worker_gets_a_new_step_from_the_creating_transaction(server: RunningServer) -> None:
    await register(server, "m-eager")
    stub = workers_pb2_grpc.WorkerServiceStub(server.channel)
    request = workers_pb2.PollStepsRequest(
        namespace=NS,
        step_handlers=["m-eager"],
        worker_id="eager-w",
        max_steps=5,
        max_wait=duration_pb2.Duration(seconds=10),
    )
    handed = value("baton_eager_leases_total", namespace=NS)
    waiting = asyncio.ensure_future(stub.PollSteps(request, metadata=server.admin, timeout=20))
    for _ in range(100):  # the poll is in
        if value("baton_active_pollers", namespace=NS) >= 1:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # and, having found nothing, waits
    task_id = await create(server, "m-eager")
    leases = (await asyncio.wait_for(waiting, 5)).leases
    assert [lease.task_id for lease in leases] == [task_id]
    assert leases[0].attempt == 1
    assert leases[0].fencing_token >= 1
    assert value("baton_eager_leases_total", namespace=NS) == handed + 1
    task = await tasks_pb2_grpc.TaskServiceStub(server.channel).GetTask(
        tasks_pb2.GetTaskRequest(id=task_id), metadata=server.admin, timeout=10
    )
    assert task.state == common_pb2.TASK_STATE_RUNNING
    assert task.steps[0].state == common_pb2.STEP_STATE_RUNNING
