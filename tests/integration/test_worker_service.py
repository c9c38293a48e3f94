"""WorkerService and the repair RPCs through the real server: a worker loop runs a diamond, retries honour
retry_after, waiting polls wake at once, heartbeats see cancellation, leases expire, RetryTask and ResolveStep."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
from google.protobuf import duration_pb2, struct_pb2

from baton.v1 import (
    common_pb2,
    handlers_pb2,
    handlers_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
    workers_pb2,
    workers_pb2_grpc,
)
from tests.support.accounts import create_account, rich_error
from tests.support.server import RunningServer

NS = "payments"
DIAMOND_HANDLERS = ["work.fetch", "work.side", "work.merge"]


def workers(running: RunningServer) -> workers_pb2_grpc.WorkerServiceStub:
    return workers_pb2_grpc.WorkerServiceStub(running.channel)


def tasks(running: RunningServer) -> tasks_pb2_grpc.TaskServiceStub:
    return tasks_pb2_grpc.TaskServiceStub(running.channel)


def seconds(value: float) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=int(value), nanos=int((value - int(value)) * 1e9))


def struct(**values: Any) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(values)
    return result


async def register(running: RunningServer, name: str, *steps: handlers_pb2.StepTemplate) -> None:
    handler = handlers_pb2.Handler(namespace=NS, name=name, version="1.0.0", steps=steps)
    await handlers_pb2_grpc.HandlerServiceStub(running.channel).RegisterHandler(
        handlers_pb2.RegisterHandlerRequest(handler=handler), metadata=running.admin, timeout=10
    )


def template(name: str, handler: str, *depends_on: str, **fields: Any) -> handlers_pb2.StepTemplate:
    return handlers_pb2.StepTemplate(name=name, step_handler=handler, depends_on=depends_on, **fields)


async def register_diamond(running: RunningServer) -> None:
    await register(
        running,
        "diamond",
        template("fetch", "work.fetch"),
        template("left", "work.side", "fetch"),
        template("right", "work.side", "fetch"),
        template("merge", "work.merge", "left", "right"),
    )


async def create(running: RunningServer, handler: str, **metadata: str) -> tasks_pb2.Task:
    request = tasks_pb2.CreateTaskRequest(namespace=NS, handler_name=handler, context=struct(order="o-1"))
    extra = tuple(metadata.items())
    return await tasks(running).CreateTask(request, metadata=(*running.admin, *extra), timeout=10)


async def poll(running: RunningServer, handlers: list[str], max_steps: int = 10, wait: float = 2.0) -> list[Any]:
    request = workers_pb2.PollStepsRequest(
        namespace=NS, step_handlers=handlers, worker_id="w-1", max_steps=max_steps, max_wait=seconds(wait)
    )
    response = await workers(running).PollSteps(request, metadata=running.admin, timeout=wait + 5)
    return list(response.leases)


async def complete(running: RunningServer, lease: Any, token: int | None = None, **result: Any) -> Any:
    ref = workers_pb2.LeaseRef(step_id=lease.step_id, fencing_token=lease.fencing_token if token is None else token)
    request = workers_pb2.CompleteStepRequest(
        worker_id="w-1", completions=[workers_pb2.StepCompletion(lease=ref, result=struct(**result))]
    )
    return (await workers(running).CompleteStep(request, metadata=running.admin, timeout=10)).outcomes[0]


async def fail(running: RunningServer, lease: Any, *, retryable: bool, retry_after: float = 0.0) -> Any:
    failure = workers_pb2.StepFailure(
        lease=workers_pb2.LeaseRef(step_id=lease.step_id, fencing_token=lease.fencing_token),
        error_type="Boom",
        error_message="it broke",
        retryable=retryable,
    )
    if retry_after:
        failure.retry_after.CopyFrom(seconds(retry_after))
    request = workers_pb2.FailStepRequest(worker_id="w-1", failures=[failure])
    return (await workers(running).FailStep(request, metadata=running.admin, timeout=10)).outcomes[0]


async def get(running: RunningServer, task_id: str) -> tasks_pb2.Task:
    return await tasks(running).GetTask(tasks_pb2.GetTaskRequest(id=task_id), metadata=running.admin, timeout=10)


async def test_worker_loop_runs_a_diamond(server: RunningServer) -> None:
    await register_diamond(server)
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    task = await create(server, "diamond", traceparent=traceparent, **{"x-request-id": "req-7"})
    seen: dict[str, Any] = {}
    while len(seen) < 4:
        leases = await poll(server, DIAMOND_HANDLERS)
        assert leases, "a step should be ready"
        for lease in leases:
            seen[lease.step_name] = lease
            outcome = await complete(server, lease, step=lease.step_name)
            assert (outcome.code, outcome.step_state) == (0, common_pb2.STEP_STATE_COMPLETED)
    fetch, merge = seen["fetch"], seen["merge"]
    assert (fetch.task_id, fetch.namespace, fetch.handler_name, fetch.attempt) == (task.id, NS, "diamond", 1)
    assert fetch.context == struct(order="o-1")
    assert (fetch.correlation_id, fetch.trace_context["traceparent"]) == ("req-7", traceparent)
    assert fetch.lease_timeout.seconds == 300
    assert dict(seen["left"].dependency_results) == {"fetch": struct(step="fetch")}
    assert dict(merge.dependency_results) == {"left": struct(step="left"), "right": struct(step="right")}
    done = await get(server, task.id)
    assert done.state == common_pb2.TASK_STATE_COMPLETED
    assert [step.result for step in done.steps] == [struct(step=s.name) for s in done.steps]
    again = await complete(server, fetch, step="fetch")
    assert again.code == 0  # a retried completion is idempotent
    stale = await complete(server, fetch, token=fetch.fencing_token + 5)
    assert stale.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]


async def test_retry_after_is_honoured_then_retry_task(server: RunningServer) -> None:
    policy = handlers_pb2.RetryPolicy(max_attempts=2, initial_backoff=seconds(0.05))
    await register(server, "flaky", template("only", "work.flaky", retry_policy=policy))
    task = await create(server, "flaky")
    [lease] = await poll(server, ["work.flaky"])
    # The retry is due 0.6 s after the server took the failure, so at least 0.6 s after `started`, however long
    # the FailStep call itself takes on a busy machine (wall-clock time, as the server's retry times).
    started = time.time()
    outcome = await fail(server, lease, retryable=True, retry_after=0.6)
    assert outcome.step_state == common_pb2.STEP_STATE_READY
    [second] = await poll(server, ["work.flaky"], wait=5)
    assert 0.55 <= time.time() - started < 2.5  # woken when the retry was due, not before, not at max_wait
    assert (second.attempt, second.fencing_token) == (2, 2)
    outcome = await fail(server, second, retryable=True)
    assert outcome.step_state == common_pb2.STEP_STATE_FAILED
    failed = await get(server, task.id)
    assert failed.state == common_pb2.TASK_STATE_FAILED
    assert (failed.steps[0].last_error.error_type, failed.steps[0].last_error.attempt) == ("Boom", 2)

    stale_etag = tasks_pb2.RetryTaskRequest(id=task.id, etag="1")
    await rich_error(tasks(server).RetryTask(stale_etag, metadata=server.admin, timeout=10), grpc.StatusCode.ABORTED)
    retried = await tasks(server).RetryTask(
        tasks_pb2.RetryTaskRequest(id=task.id, etag=failed.etag), metadata=server.admin, timeout=10
    )
    assert retried.state == common_pb2.TASK_STATE_RUNNING
    assert (retried.steps[0].state, retried.steps[0].attempts) == (common_pb2.STEP_STATE_READY, 0)
    [third] = await poll(server, ["work.flaky"])
    assert (third.attempt, third.fencing_token) == (1, 3)
    await complete(server, third)
    assert (await get(server, task.id)).state == common_pb2.TASK_STATE_COMPLETED
    again = tasks(server).RetryTask(tasks_pb2.RetryTaskRequest(id=task.id), metadata=server.admin, timeout=10)
    await rich_error(again, grpc.StatusCode.FAILED_PRECONDITION)


async def test_waiting_poll_wakes_when_a_step_is_ready(server: RunningServer) -> None:
    await register_diamond(server)
    waiting = asyncio.create_task(poll(server, ["work.fetch"], wait=10))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    started = time.monotonic()
    await create(server, "diamond")
    leases = await waiting
    assert time.monotonic() - started < 0.5
    assert [lease.step_name for lease in leases] == ["fetch"]


async def test_poll_returns_empty_after_max_wait(server: RunningServer) -> None:
    started = time.monotonic()
    assert await poll(server, ["work.none"], wait=0.3) == []
    assert 0.25 <= time.monotonic() - started < 2.0


async def test_heartbeat_extends_and_reports_cancellation(server: RunningServer) -> None:
    await register_diamond(server)
    task = await create(server, "diamond")
    [lease] = await poll(server, ["work.fetch"])
    refs = [
        workers_pb2.LeaseRef(step_id=lease.step_id, fencing_token=lease.fencing_token),
        workers_pb2.LeaseRef(step_id=lease.step_id, fencing_token=lease.fencing_token - 1),
        workers_pb2.LeaseRef(step_id="no-such-step", fencing_token=1),
    ]
    request = workers_pb2.HeartbeatRequest(worker_id="w-1", leases=refs)
    first = (await workers(server).Heartbeat(request, metadata=server.admin, timeout=10)).outcomes
    assert [o.code for o in first] == [0, 9, 5]
    assert not first[0].cancel_requested
    assert first[0].lease_expire_time.ToDatetime() >= lease.lease_expire_time.ToDatetime()
    cancel = tasks_pb2.CancelTaskRequest(id=task.id)
    await tasks(server).CancelTask(cancel, metadata=server.admin, timeout=10)
    after = (await workers(server).Heartbeat(request, metadata=server.admin, timeout=10)).outcomes
    assert (after[0].code, after[0].cancel_requested) == (0, True)
    outcome = await complete(server, lease, rows=1)  # the work was done: accepted, dependents stay put
    assert outcome.code == 0
    done = await get(server, task.id)
    assert done.state == common_pb2.TASK_STATE_CANCELLED
    assert [s.state for s in done.steps][:2] == [common_pb2.STEP_STATE_COMPLETED, common_pb2.STEP_STATE_CANCELLED]


async def test_expired_lease_is_leased_again(server: RunningServer) -> None:
    policy = handlers_pb2.RetryPolicy(max_attempts=3, initial_backoff=seconds(0.05))
    await register(server, "slow", template("only", "work.slow", retry_policy=policy, lease_timeout=seconds(1)))
    await create(server, "slow")
    started = time.time()  # before the claim (wall clock, as the server's lease expiry): the lease runs 1 s from it
    [lease] = await poll(server, ["work.slow"])
    [again] = await poll(server, ["work.slow"], wait=5)
    assert 0.9 <= time.time() - started < 2.5
    assert (again.attempt, again.fencing_token) == (2, lease.fencing_token + 1)
    late = await complete(server, lease)
    assert late.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert (await complete(server, again)).code == 0


async def test_resolve_step_lets_a_failed_task_continue(server: RunningServer) -> None:
    await register_diamond(server)
    task = await create(server, "diamond")
    [fetch] = await poll(server, ["work.fetch"])
    await fail(server, fetch, retryable=False)
    assert (await get(server, task.id)).state == common_pb2.TASK_STATE_FAILED
    request = tasks_pb2.ResolveStepRequest(task_id=task.id, step_name="fetch", result=struct(manual=True))
    resolved = await tasks(server).ResolveStep(request, metadata=server.admin, timeout=10)
    assert resolved.state == common_pb2.TASK_STATE_RUNNING
    states = {step.name: step.state for step in resolved.steps}
    assert states["fetch"] == common_pb2.STEP_STATE_RESOLVED_MANUALLY
    assert states["left"] == states["right"] == common_pb2.STEP_STATE_READY
    sides = await poll(server, ["work.side"])
    assert [dict(lease.dependency_results) for lease in sides] == [{"fetch": struct(manual=True)}] * 2
    again = tasks(server).ResolveStep(request, metadata=server.admin, timeout=10)
    await rich_error(again, grpc.StatusCode.FAILED_PRECONDITION)
    missing = tasks_pb2.ResolveStepRequest(task_id=task.id, step_name="nope")
    await rich_error(tasks(server).ResolveStep(missing, metadata=server.admin, timeout=10), grpc.StatusCode.NOT_FOUND)


async def test_poll_validation_and_namespace_scope(server: RunningServer) -> None:
    bad = workers_pb2.PollStepsRequest(namespace=NS, worker_id="w")
    error = await rich_error(
        workers(server).PollSteps(bad, metadata=server.admin, timeout=5), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "step_handlers" in error.violations
    worker = await create_account(server, "payments-worker", f"worker@{NS}")
    other = workers_pb2.PollStepsRequest(namespace="shipping", step_handlers=["x"], max_wait=seconds(0.01))
    denied = workers(server).PollSteps(other, metadata=worker.metadata, timeout=5)
    await rich_error(denied, grpc.StatusCode.PERMISSION_DENIED)
    mine = workers_pb2.PollStepsRequest(namespace=NS, step_handlers=["x"], max_wait=seconds(0.01))
    assert list((await workers(server).PollSteps(mine, metadata=worker.metadata, timeout=5)).leases) == []


async def test_other_namespaces_see_not_found(server: RunningServer) -> None:
    await register_diamond(server)
    task = await create(server, "diamond")
    [lease] = await poll(server, ["work.fetch"])
    outsider = await create_account(server, "shipping-worker", "worker@shipping", "operator@shipping")
    ref = workers_pb2.LeaseRef(step_id=lease.step_id, fencing_token=lease.fencing_token)
    request = workers_pb2.CompleteStepRequest(completions=[workers_pb2.StepCompletion(lease=ref)])
    response = await workers(server).CompleteStep(request, metadata=outsider.metadata, timeout=10)
    assert response.outcomes[0].code == grpc.StatusCode.NOT_FOUND.value[0]
    retry = tasks(server).RetryTask(tasks_pb2.RetryTaskRequest(id=task.id), metadata=outsider.metadata, timeout=10)
    await rich_error(retry, grpc.StatusCode.NOT_FOUND)
    resolve = tasks_pb2.ResolveStepRequest(task_id=task.id, step_name="fetch")
    await rich_error(
        tasks(server).ResolveStep(resolve, metadata=outsider.metadata, timeout=10), grpc.StatusCode.NOT_FOUND
    )
    assert (await get(server, task.id)).steps[0].state == common_pb2.STEP_STATE_RUNNING
