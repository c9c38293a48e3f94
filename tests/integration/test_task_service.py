"""TaskService through the real server: validation, read masks, filters and page tokens, namespace scoping,
etags, idempotent creates and the task graph."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import field_mask_pb2, struct_pb2

from baton.v1 import common_pb2, handlers_pb2, handlers_pb2_grpc, tasks_pb2, tasks_pb2_grpc
from tests.support.accounts import Metadata, create_account, rich_error
from tests.support.server import RunningServer

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def stub(running: RunningServer) -> tasks_pb2_grpc.TaskServiceStub:
    return tasks_pb2_grpc.TaskServiceStub(running.channel)


async def register_diamond(running: RunningServer, namespace: str = "payments") -> None:
    def step(name: str, *depends_on: str) -> handlers_pb2.StepTemplate:
        return handlers_pb2.StepTemplate(name=name, depends_on=depends_on, step_handler=f"work.{name}")

    definition = handlers_pb2.Handler(
        namespace=namespace,
        name="diamond",
        version="1.0.0",
        steps=[step("fetch"), step("left", "fetch"), step("right", "fetch"), step("merge", "left", "right")],
    )
    await handlers_pb2_grpc.HandlerServiceStub(running.channel).RegisterHandler(
        handlers_pb2.RegisterHandlerRequest(handler=definition), metadata=running.admin, timeout=10
    )


async def create(running: RunningServer, metadata: Metadata | None = None, **fields: Any) -> Any:
    request = tasks_pb2.CreateTaskRequest(**({"namespace": "payments", "handler_name": "diamond"} | fields))
    return await stub(running).CreateTask(request, metadata=metadata or running.admin, timeout=10)


async def test_create_and_get_with_read_mask(server: RunningServer) -> None:
    await register_diamond(server)
    context = struct_pb2.Struct()
    context.update({"order": "o-1", "amount": 12.5})
    metadata = (*server.admin, ("x-request-id", "req-abc"))
    task = await create(server, metadata, context=context, tags=["urgent"], request_id="order-o-1")
    assert task.state == common_pb2.TASK_STATE_PENDING
    assert (task.correlation_id, task.request_id, task.etag, task.handler_version) == (
        "req-abc",
        "order-o-1",
        "1",
        "1.0.0",
    )
    assert [s.name for s in task.steps] == ["fetch", "left", "right", "merge"]
    assert [s.state for s in task.steps] == [common_pb2.STEP_STATE_READY] + [common_pb2.STEP_STATE_PENDING] * 3
    assert task.context == context
    assert await create(server, context=context, tags=["urgent"], request_id="order-o-1") == task

    full = await stub(server).GetTask(tasks_pb2.GetTaskRequest(id=task.id), metadata=server.admin, timeout=10)
    assert full == task
    mask = field_mask_pb2.FieldMask(paths=["id", "state"])
    partial = await stub(server).GetTask(
        tasks_pb2.GetTaskRequest(id=task.id, read_mask=mask), metadata=server.admin, timeout=10
    )
    assert partial == tasks_pb2.Task(id=task.id, state=task.state)

    bad = field_mask_pb2.FieldMask(paths=["id", "nope"])
    request = tasks_pb2.GetTaskRequest(id=task.id, read_mask=bad)
    error = await rich_error(stub(server).GetTask(request, metadata=server.admin, timeout=10), INVALID)
    assert list(error.violations) == ["read_mask"]

    reused = create(server, context=context, request_id="order-o-1")
    error = await rich_error(reused, grpc.StatusCode.ALREADY_EXISTS)
    assert error.info.reason == "REQUEST_ID_REUSED"


async def test_create_rejects_bad_input(server: RunningServer) -> None:
    await register_diamond(server)
    big = struct_pb2.Struct()
    big.update({"blob": "x" * (256 * 1024)})
    error = await rich_error(create(server, context=big), INVALID)
    assert list(error.violations) == ["context"]

    error = await rich_error(create(server, tags=["t"] * 33), INVALID)
    assert "tags" in error.violations
    error = await rich_error(create(server, tags=["ok", "y" * 65]), INVALID)
    assert list(error.violations) == ["tags[1]"]
    error = await rich_error(create(server, request_id="has space"), INVALID)
    assert list(error.violations) == ["request_id"]
    error = await rich_error(create(server, priority=1001, correlation_id="c" * 129), INVALID)
    assert set(error.violations) == {"priority", "correlation_id"}

    error = await rich_error(create(server, handler_name="missing"), grpc.StatusCode.NOT_FOUND)
    assert error.resource.resource_name == "namespaces/payments/handlers/missing"


async def test_list_filters_and_tokens(server: RunningServer) -> None:
    await register_diamond(server)
    made = [await create(server, tags=["even"] if i % 2 == 0 else []) for i in range(4)]
    tasks = stub(server)

    async def page(**fields: Any) -> Any:
        request = tasks_pb2.ListTasksRequest(namespace="payments", **fields)
        return await tasks.ListTasks(request, metadata=server.admin, timeout=10)

    first = await page(page_size=3)
    assert [t.id for t in first.tasks] == [t.id for t in reversed(made)][:3]
    assert all(not t.steps for t in first.tasks)
    assert first.tasks[0].etag == "1"
    rest = await page(page_size=3, page_token=first.next_page_token)
    assert [t.id for t in rest.tasks] == [made[0].id]
    assert rest.next_page_token == ""

    tagged = await page(filter='tags:"even" AND state = PENDING', read_mask=field_mask_pb2.FieldMask(paths=["steps"]))
    assert [len(t.steps) for t in tagged.tasks] == [4, 4]
    assert all(not t.id for t in tagged.tasks)

    error = await rich_error(page(filter="colour = blue"), INVALID)
    assert "colour = blue" in error.violations["filter"]
    error = await rich_error(page(page_size=3, page_token=first.next_page_token, filter="state = RUNNING"), INVALID)
    assert list(error.violations) == ["page_token"]
    error = await rich_error(page(page_token="garbage!"), INVALID)
    assert list(error.violations) == ["page_token"]


async def test_namespace_scoping(server: RunningServer) -> None:
    await register_diamond(server, "shipping")
    await register_diamond(server, "payments")
    developer = await create_account(server, "dev-payments", "developer@payments")
    shipping_task = await create(server, namespace="shipping")
    own = await create(server, developer.metadata)
    assert own.creator == developer.user.id

    get = stub(server).GetTask(tasks_pb2.GetTaskRequest(id=shipping_task.id), metadata=developer.metadata, timeout=10)
    missing = await rich_error(get, grpc.StatusCode.NOT_FOUND)
    cancel = stub(server).CancelTask(
        tasks_pb2.CancelTaskRequest(id=shipping_task.id), metadata=developer.metadata, timeout=10
    )
    await rich_error(cancel, grpc.StatusCode.NOT_FOUND)
    graph = stub(server).GetTaskGraph(
        tasks_pb2.GetTaskGraphRequest(id=shipping_task.id), metadata=developer.metadata, timeout=10
    )
    await rich_error(graph, grpc.StatusCode.NOT_FOUND)
    unknown = "0190f5d2-7c1e-7abc-8def-0123456789ab"
    get = stub(server).GetTask(tasks_pb2.GetTaskRequest(id=unknown), metadata=developer.metadata, timeout=10)
    assert (await rich_error(get, grpc.StatusCode.NOT_FOUND)).info.reason == missing.info.reason

    await rich_error(create(server, developer.metadata, namespace="shipping"), grpc.StatusCode.PERMISSION_DENIED)
    got = await stub(server).GetTask(tasks_pb2.GetTaskRequest(id=own.id), metadata=developer.metadata, timeout=10)
    assert got.id == own.id


async def test_cancel_with_etag(server: RunningServer) -> None:
    await register_diamond(server)
    task = await create(server)
    tasks = stub(server)
    stale = tasks.CancelTask(tasks_pb2.CancelTaskRequest(id=task.id, etag="41"), metadata=server.admin, timeout=10)
    await rich_error(stale, grpc.StatusCode.ABORTED)
    request = tasks_pb2.CancelTaskRequest(id=task.id, etag=task.etag, reason="test")
    cancelled = await tasks.CancelTask(request, metadata=server.admin, timeout=10)
    assert cancelled.state == common_pb2.TASK_STATE_CANCELLED
    assert cancelled.etag == "2"
    assert {s.state for s in cancelled.steps} == {common_pb2.STEP_STATE_CANCELLED}
    again = await tasks.CancelTask(request, metadata=server.admin, timeout=10)
    assert again == cancelled

    retry = tasks.RetryTask(tasks_pb2.RetryTaskRequest(id=task.id), metadata=server.admin, timeout=10)
    await rich_error(retry, grpc.StatusCode.FAILED_PRECONDITION)
    resolve = tasks_pb2.ResolveStepRequest(task_id=task.id, step_name="fetch")
    await rich_error(tasks.ResolveStep(resolve, metadata=server.admin, timeout=10), grpc.StatusCode.FAILED_PRECONDITION)


async def test_graph_of_a_diamond(server: RunningServer) -> None:
    await register_diamond(server)
    task = await create(server)
    graph = await stub(server).GetTaskGraph(
        tasks_pb2.GetTaskGraphRequest(id=task.id), metadata=server.admin, timeout=10
    )
    assert graph.task_id == task.id
    assert [n.step_name for n in graph.nodes] == ["fetch", "left", "right", "merge"]
    assert {(e.from_step, e.to_step) for e in graph.edges} == {
        ("fetch", "left"),
        ("fetch", "right"),
        ("left", "merge"),
        ("right", "merge"),
    }
    assert list(graph.critical_path) == ["fetch", "left", "merge"]
    assert graph.critical_path_duration.seconds == 3
    assert graph.bottleneck_steps[0] == "fetch"
    fetch = graph.nodes[0]
    assert (fetch.downstream_count, fetch.on_critical_path) == (3, True)
    assert fetch.impact_score == 3 * 1.0 + 2.0


async def test_batch_create(server: RunningServer) -> None:
    await register_diamond(server)
    entry = tasks_pb2.CreateTaskRequest(handler_name="diamond", request_id="batch-1")
    request = tasks_pb2.BatchCreateTasksRequest(namespace="payments", requests=[entry, entry])
    response = await stub(server).BatchCreateTasks(request, metadata=server.admin, timeout=10)
    assert len(response.tasks) == 2
    assert response.tasks[0].id == response.tasks[1].id
    assert response.tasks[0].namespace == "payments"

    wrong = tasks_pb2.CreateTaskRequest(namespace="shipping", handler_name="diamond")
    bad = tasks_pb2.BatchCreateTasksRequest(namespace="payments", requests=[wrong])
    error = await rich_error(stub(server).BatchCreateTasks(bad, metadata=server.admin, timeout=10), INVALID)
    assert list(error.violations) == ["requests[0].namespace"]
