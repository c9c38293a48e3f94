"""Bad input through the real server: the right status code, and a field violation naming the field.

Only what tests/integration/test_task_service.py, test_handler_service.py, test_worker_service.py and
test_watch_task.py do not cover already: unknown namespaces and handler versions, Structs that cannot be JSON
(NaN, Infinity) or do not parse at all, page tokens that are garbage or belong to another request or another list,
negative page sizes, oversized contexts and results in batches, completions and repairs, and the bounds of
PollSteps and the outcome calls.
"""

from __future__ import annotations

import math
from typing import Any

import grpc
from google.protobuf import field_mask_pb2, struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from baton.pagination import encode_token
from baton.v1 import common_pb2, handlers_pb2, handlers_pb2_grpc, tasks_pb2, workers_pb2
from tests.engine.helpers import ref, register, seconds, struct, task_stub, worker_stub
from tests.support.accounts import rich_error
from tests.support.server import RunningServer

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
NS = "payments"
BIG = 256 * 1024 + 1


async def answer(call: Any) -> tuple[Any, grpc.StatusCode, list[str]]:
    """A call's response (None when it fails), status code, and the fields its BadRequest names."""
    try:
        response = await call
    except grpc.aio.AioRpcError as error:
        status = rpc_status.from_call(error)
        fields = []
        for detail in status.details if status is not None else []:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                fields += [violation.field for violation in bad.field_violations]
        return None, error.code(), fields
    return response, grpc.StatusCode.OK, []


async def code_and_fields(call: Any) -> tuple[grpc.StatusCode, list[str]]:
    """The status code a call ends with and the fields its BadRequest names (OK and [] when it succeeds)."""
    _response, code, fields = await answer(call)
    return code, fields


async def setup(running: RunningServer) -> None:
    await register(
        running.channel,
        running.admin,
        NS,
        "order",
        [handlers_pb2.StepTemplate(name="charge", step_handler="pay.charge")],
    )


def create_request(**fields: Any) -> tasks_pb2.CreateTaskRequest:
    return tasks_pb2.CreateTaskRequest(**({"namespace": NS, "handler_name": "order"} | fields))


async def create(running: RunningServer, **fields: Any) -> tasks_pb2.Task:
    task: tasks_pb2.Task = await task_stub(running.channel).CreateTask(
        create_request(**fields), metadata=running.admin, timeout=10
    )
    return task


def not_json(number: float) -> struct_pb2.Struct:
    """A Struct holding a number JSON cannot carry (NaN or ±Infinity), nested one level down."""
    value = struct_pb2.Struct()
    value.fields["amount"].struct_value.fields["total"].number_value = number
    return value


def big_struct() -> struct_pb2.Struct:
    return struct(blob="x" * BIG)


async def lease(running: RunningServer) -> workers_pb2.Lease:
    task = await create(running)
    request = workers_pb2.PollStepsRequest(namespace=NS, step_handlers=["pay.charge"], max_wait=seconds(2))
    [leased] = (await worker_stub(running.channel).PollSteps(request, metadata=running.admin, timeout=10)).leases
    assert leased.task_id == task.id
    return leased


async def step_of(running: RunningServer, task_id: str) -> tasks_pb2.Step:
    task = await task_stub(running.channel).GetTask(
        tasks_pb2.GetTaskRequest(id=task_id), metadata=running.admin, timeout=10
    )
    return task.steps[0]


# -- unknown namespace, handler, version ----------------------------------------------------------------------------


async def test_unknown_namespace_handler_or_version_is_not_found(server: RunningServer) -> None:
    await setup(server)
    stub = task_stub(server.channel)
    for fields, resource in [
        ({"namespace": "nowhere"}, "namespaces/nowhere/handlers/order"),
        ({"handler_name": "refund"}, "namespaces/payments/handlers/refund"),
        ({"handler_version": "9.9.9"}, "namespaces/payments/handlers/order"),
    ]:
        call = stub.CreateTask(create_request(**fields), metadata=server.admin, timeout=10)
        error = await rich_error(call, NOT_FOUND)
        assert error.resource.resource_name.startswith(resource), (fields, error.resource)
    batch = tasks_pb2.BatchCreateTasksRequest(
        namespace="nowhere", requests=[tasks_pb2.CreateTaskRequest(handler_name="order")]
    )
    await rich_error(stub.BatchCreateTasks(batch, metadata=server.admin, timeout=10), NOT_FOUND)
    handlers = handlers_pb2_grpc.HandlerServiceStub(server.channel)
    get = handlers_pb2.GetHandlerRequest(namespace="nowhere", name="order")
    await rich_error(handlers.GetHandler(get, metadata=server.admin, timeout=10), NOT_FOUND)
    # Nothing was created anywhere.
    listed = await stub.ListTasks(tasks_pb2.ListTasksRequest(namespace=NS), metadata=server.admin, timeout=10)
    assert list(listed.tasks) == []


async def test_missing_names_are_invalid(server: RunningServer) -> None:
    await setup(server)
    call = task_stub(server.channel).CreateTask(
        create_request(namespace="", handler_name=""), metadata=server.admin, timeout=10
    )
    error = await rich_error(call, INVALID)
    assert set(error.violations) == {"namespace", "handler_name"}


# -- malformed Structs ----------------------------------------------------------------------------------------------


async def test_context_that_is_not_json_is_invalid(server: RunningServer) -> None:
    await setup(server)
    stub = task_stub(server.channel)
    for number in (math.nan, math.inf, -math.inf):
        call = stub.CreateTask(create_request(context=not_json(number)), metadata=server.admin, timeout=10)
        error = await rich_error(call, INVALID)
        assert list(error.violations) == ["context"], number
    batch = tasks_pb2.BatchCreateTasksRequest(
        namespace=NS,
        requests=[
            tasks_pb2.CreateTaskRequest(handler_name="order"),
            tasks_pb2.CreateTaskRequest(handler_name="order", context=not_json(math.nan)),
        ],
    )
    error = await rich_error(stub.BatchCreateTasks(batch, metadata=server.admin, timeout=10), INVALID)
    assert list(error.violations) == ["requests[1].context"]
    listed = await stub.ListTasks(tasks_pb2.ListTasksRequest(namespace=NS), metadata=server.admin, timeout=10)
    assert list(listed.tasks) == []  # all or none


async def test_result_that_is_not_json_is_refused_and_the_lease_stays(server: RunningServer) -> None:
    """A completion whose result is not JSON is refused (the call, or that lease with code 3) and the step stays
    RUNNING under the same lease, which can still complete."""
    await setup(server)
    leased = await lease(server)
    workers = worker_stub(server.channel)
    bad = workers_pb2.StepCompletion(lease=ref(leased), result=not_json(math.nan))
    request = workers_pb2.CompleteStepRequest(completions=[bad])
    response, code, fields = await answer(workers.CompleteStep(request, metadata=server.admin, timeout=10))
    if response is not None:
        assert response.outcomes[0].code == INVALID.value[0]
    else:
        assert (code, fields) == (INVALID, ["completions[0].result"])
    assert (await step_of(server, leased.task_id)).state == common_pb2.STEP_STATE_RUNNING
    good = workers_pb2.StepCompletion(lease=ref(leased), result=struct(ok=True))
    done = await workers.CompleteStep(
        workers_pb2.CompleteStepRequest(completions=[good]), metadata=server.admin, timeout=10
    )
    assert done.outcomes[0].code == 0


async def test_failure_details_that_are_not_json_are_refused_or_dropped(server: RunningServer) -> None:
    """FailStep details that are not JSON never make an INTERNAL error: refused (the call, or that lease with
    code 3, and the step stays RUNNING), or the attempt recorded with the details dropped, like oversized ones."""
    await setup(server)
    leased = await lease(server)
    workers = worker_stub(server.channel)
    failure = workers_pb2.StepFailure(lease=ref(leased), error_type="Boom", retryable=False, details=not_json(math.inf))
    request = workers_pb2.FailStepRequest(failures=[failure])
    response, code, fields = await answer(workers.FailStep(request, metadata=server.admin, timeout=10))
    state = (await step_of(server, leased.task_id)).state
    if response is not None:  # refused for that lease, or the attempt recorded (details kept as a marker)
        got = (response.outcomes[0].code, state)
        assert got in ((INVALID.value[0], common_pb2.STEP_STATE_RUNNING), (0, common_pb2.STEP_STATE_FAILED))
    else:
        assert (code, fields, state) == (INVALID, ["failures[0].details"], common_pb2.STEP_STATE_RUNNING)


async def test_resolve_with_a_result_that_is_not_json_is_invalid(server: RunningServer) -> None:
    await setup(server)
    leased = await lease(server)
    failure = workers_pb2.StepFailure(lease=ref(leased), error_type="Boom", retryable=False)
    await worker_stub(server.channel).FailStep(
        workers_pb2.FailStepRequest(failures=[failure]), metadata=server.admin, timeout=10
    )
    stub = task_stub(server.channel)
    for result, why in ((not_json(math.nan), "not JSON"), (big_struct(), "oversized")):
        request = tasks_pb2.ResolveStepRequest(task_id=leased.task_id, step_name="charge", result=result)
        error = await rich_error(stub.ResolveStep(request, metadata=server.admin, timeout=10), INVALID)
        assert list(error.violations) == ["result"], why
    assert (await step_of(server, leased.task_id)).state == common_pb2.STEP_STATE_FAILED


async def test_request_bytes_that_do_not_parse_are_invalid(server: RunningServer) -> None:
    """A request that is not a valid message (corrupt wire format, a Struct key that is not UTF-8) is the caller's
    fault: INVALID_ARGUMENT, not UNKNOWN or INTERNAL."""
    await setup(server)
    raw = server.channel.unary_unary(
        "/baton.v1.TaskService/CreateTask", request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    good = create_request(context=struct(k="v")).SerializeToString()
    corrupt = good[:-3] + b"\xff\xff\xff"
    bad_utf8 = good.replace(b"\x01k", b"\x01\xc3")  # the context's key "k" becomes a lone UTF-8 lead byte
    assert bad_utf8 != good
    got = [
        (await code_and_fields(raw(payload, metadata=server.admin, timeout=10)))[0] for payload in (corrupt, bad_utf8)
    ]
    assert got == [INVALID, INVALID]


# -- page tokens and sizes ------------------------------------------------------------------------------------------


async def test_task_page_tokens_are_bound_to_their_request(server: RunningServer) -> None:
    await setup(server)
    await register(
        server.channel, server.admin, "shipping", "order", [handlers_pb2.StepTemplate(name="a", step_handler="x")]
    )
    for _ in range(3):
        await create(server)
    stub = task_stub(server.channel)

    async def page(**fields: Any) -> tasks_pb2.ListTasksResponse:
        request = tasks_pb2.ListTasksRequest(**({"namespace": NS} | fields))
        response: tasks_pb2.ListTasksResponse = await stub.ListTasks(request, metadata=server.admin, timeout=10)
        return response

    first = await page(page_size=1)
    token = first.next_page_token
    assert token
    assert len((await page(page_size=5, page_token=token)).tasks) == 2  # the page size may change between pages
    mask = field_mask_pb2.FieldMask(paths=["id"])
    namespaces = await handlers_pb2_grpc.HandlerServiceStub(server.channel).ListNamespaces(
        handlers_pb2.ListNamespacesRequest(page_size=1), metadata=server.admin, timeout=10
    )
    assert namespaces.next_page_token
    bound = {"namespace": NS, "filter": "", "read_mask": []}
    forged = [
        encode_token({"t": "2026-01-01T00:00:00", "i": "x"}, bound),  # a time without an offset
        encode_token({"t": "not a time", "i": "x"}, bound),
        encode_token({"t": 5, "i": None}, bound),
        encode_token({}, bound),
    ]
    wrong = []
    for label, fields in [
        ("another namespace", {"namespace": "shipping", "page_token": token}),
        ("another read mask", {"page_token": token, "read_mask": mask}),
        ("another filter", {"page_token": token, "filter": 'tags:"x"'}),
        ("a ListNamespaces token", {"page_token": namespaces.next_page_token}),
        ("not base64", {"page_token": "%%%"}),
        ("base64 of nothing useful", {"page_token": "AAAA"}),
        *((f"forged position {i}", {"page_token": f}) for i, f in enumerate(forged)),
        ("a negative page size", {"page_size": -1}),
    ]:
        expected = ["page_size"] if label == "a negative page size" else ["page_token"]
        got = await code_and_fields(page(**fields))
        if got != (INVALID, expected):
            wrong.append((label, got))
    assert wrong == []
    huge = await page(page_size=1_000_000)  # above the maximum is capped, not an error
    assert len(huge.tasks) == 3


async def test_handler_and_namespace_page_tokens_and_sizes(server: RunningServer) -> None:
    await setup(server)
    await register(
        server.channel, server.admin, "shipping", "order", [handlers_pb2.StepTemplate(name="a", step_handler="x")]
    )
    stub = handlers_pb2_grpc.HandlerServiceStub(server.channel)
    namespaces = await stub.ListNamespaces(
        handlers_pb2.ListNamespacesRequest(page_size=1), metadata=server.admin, timeout=10
    )
    assert namespaces.next_page_token
    tasks_token = encode_token({"t": "2026-01-01T00:00:00+00:00", "i": "x"}, {"namespace": NS})
    cases = [
        (handlers_pb2.ListNamespacesRequest(page_size=-5), stub.ListNamespaces, "page_size"),
        (handlers_pb2.ListNamespacesRequest(page_token="garbage!"), stub.ListNamespaces, "page_token"),
        (handlers_pb2.ListNamespacesRequest(page_token=tasks_token), stub.ListNamespaces, "page_token"),
        (handlers_pb2.ListHandlersRequest(namespace=NS, page_token="garbage!"), stub.ListHandlers, "page_token"),
        (
            handlers_pb2.ListHandlersRequest(namespace=NS, page_token=namespaces.next_page_token),
            stub.ListHandlers,
            "page_token",
        ),
        (
            handlers_pb2.ListHandlersRequest(namespace="shipping", latest_only=True, page_token="eyJ2IjoxLCJwIjp7fX0"),
            stub.ListHandlers,
            "page_token",
        ),
    ]
    for request, method, field in cases:
        error = await rich_error(method(request, metadata=server.admin, timeout=10), INVALID)
        assert list(error.violations) == [field], request


# -- oversized input ------------------------------------------------------------------------------------------------


async def test_oversized_context_in_a_batch_and_oversized_result(server: RunningServer) -> None:
    await setup(server)
    stub = task_stub(server.channel)
    batch = tasks_pb2.BatchCreateTasksRequest(
        namespace=NS,
        requests=[
            tasks_pb2.CreateTaskRequest(handler_name="order"),
            tasks_pb2.CreateTaskRequest(handler_name="order", context=big_struct()),
        ],
    )
    error = await rich_error(stub.BatchCreateTasks(batch, metadata=server.admin, timeout=10), INVALID)
    assert list(error.violations) == ["requests[1].context"]

    leased = await lease(server)
    workers = worker_stub(server.channel)
    big = workers_pb2.StepCompletion(lease=ref(leased), result=big_struct())
    small = workers_pb2.StepCompletion(lease=ref(leased), result=struct(ok=True))
    response = await workers.CompleteStep(
        workers_pb2.CompleteStepRequest(completions=[big]), metadata=server.admin, timeout=10
    )
    assert response.outcomes[0].code == INVALID.value[0]
    assert (await step_of(server, leased.task_id)).state == common_pb2.STEP_STATE_RUNNING
    response = await workers.CompleteStep(
        workers_pb2.CompleteStepRequest(completions=[small]), metadata=server.admin, timeout=10
    )
    assert response.outcomes[0].code == 0


# -- worker call bounds ---------------------------------------------------------------------------------------------


async def test_poll_reports_every_bad_field(server: RunningServer) -> None:
    workers = worker_stub(server.channel)
    request = workers_pb2.PollStepsRequest(namespace="", step_handlers=["x" * 129], max_steps=-1, max_wait=seconds(-1))
    error = await rich_error(workers.PollSteps(request, metadata=server.admin, timeout=10), INVALID)
    assert set(error.violations) == {"namespace", "step_handlers", "max_steps", "max_wait"}
    for fields, field in [
        ({"max_steps": 101}, "max_steps"),
        ({"step_handlers": ["h"] * 101}, "step_handlers"),
        ({"worker_id": "w" * 129}, "worker_id"),
    ]:
        request = workers_pb2.PollStepsRequest(
            **({"namespace": NS, "step_handlers": ["h"], "max_wait": seconds(0.01)} | fields)
        )
        error = await rich_error(workers.PollSteps(request, metadata=server.admin, timeout=10), INVALID)
        assert list(error.violations) == [field], fields
    # An unknown namespace or step handler is no error for a poll: nothing is ready there.
    request = workers_pb2.PollStepsRequest(namespace="nowhere", step_handlers=["h"], max_wait=seconds(0.01))
    assert list((await workers.PollSteps(request, metadata=server.admin, timeout=10)).leases) == []


async def test_outcome_calls_are_bounded(server: RunningServer) -> None:
    workers = worker_stub(server.channel)
    refs = [workers_pb2.LeaseRef(step_id="s", fencing_token=1)] * 1001
    calls = [
        (workers.Heartbeat(workers_pb2.HeartbeatRequest(leases=refs), metadata=server.admin, timeout=10), "leases"),
        (
            workers.CompleteStep(
                workers_pb2.CompleteStepRequest(completions=[workers_pb2.StepCompletion(lease=r) for r in refs]),
                metadata=server.admin,
                timeout=10,
            ),
            "completions",
        ),
        (
            workers.FailStep(
                workers_pb2.FailStepRequest(failures=[workers_pb2.StepFailure(lease=r) for r in refs]),
                metadata=server.admin,
                timeout=10,
            ),
            "failures",
        ),
    ]
    for call, field in calls:
        error = await rich_error(call, INVALID)
        assert list(error.violations) == [field]
    long_worker = workers_pb2.HeartbeatRequest(worker_id="w" * 129, leases=refs[:1])
    error = await rich_error(workers.Heartbeat(long_worker, metadata=server.admin, timeout=10), INVALID)
    assert list(error.violations) == ["worker_id"]
