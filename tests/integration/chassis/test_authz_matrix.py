"""The authorization matrix: every RPC of the contract × every kind of caller, through a real server.

The expected outcome is computed from the contract (`load_policies()`) and the role table (`ROLE_PERMISSIONS`);
`ROWS` holds one row per RPC (its permission and namespace field as this suite expects them, and the fields of a
minimal request), and a test makes sure the rows and the policy table name exactly the same RPCs.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message_factory import GetMessageClass

from baton.auth.principal import GLOBAL_ONLY, ROLE_PERMISSIONS, Role
from baton.server.policy import API_FILES, MethodPolicy, load_policies
from tests.integration.chassis.conftest import (
    Metadata,
    config_for,
    create_account,
    disable_user,
    revoke_key,
    start_server,
)
from tests.support.server import RunningServer

module_loop = pytest.mark.asyncio(loop_scope="module")

PUBLIC = "<public>"
ANY_AUTHENTICATED = ""
NEW_ID = "<uuid>"  # replaced by a fresh random UUID: a throwaway target, so allowed calls change nothing


@dataclass(frozen=True)
class Row:
    """What this suite expects of one RPC, and the fields of a minimal request."""

    permission: str
    namespace_field: str = ""
    fields: dict[str, Any] = field(default_factory=dict)


ROWS: dict[str, Row] = {
    "/baton.v1.HandlerService/RegisterHandler": Row("handlers.write", "handler.namespace"),
    "/baton.v1.HandlerService/GetHandler": Row("handlers.read", "namespace", {"name": "no-such-handler"}),
    "/baton.v1.HandlerService/ListHandlers": Row("handlers.read", "namespace"),
    "/baton.v1.HandlerService/ListNamespaces": Row("handlers.read"),
    "/baton.v1.TaskService/CreateTask": Row("tasks.create", "namespace", {"handler_name": "no-such-handler"}),
    "/baton.v1.TaskService/BatchCreateTasks": Row("tasks.create", "namespace"),
    "/baton.v1.TaskService/GetTask": Row("tasks.read", "", {"id": NEW_ID}),
    "/baton.v1.TaskService/ListTasks": Row("tasks.read", "namespace"),
    "/baton.v1.TaskService/CancelTask": Row("tasks.cancel", "", {"id": NEW_ID}),
    "/baton.v1.TaskService/RetryTask": Row("tasks.retry", "", {"id": NEW_ID}),
    "/baton.v1.TaskService/ResolveStep": Row("tasks.resolve", "", {"task_id": NEW_ID, "step_name": "s"}),
    "/baton.v1.TaskService/GetTaskGraph": Row("tasks.read", "", {"id": NEW_ID}),
    "/baton.v1.TaskService/WatchTask": Row("tasks.read", "", {"id": NEW_ID}),
    "/baton.v1.WorkerService/PollSteps": Row(
        "steps.poll", "namespace", {"step_handlers": ["no-such-step"], "worker_id": "matrix", "max_wait.nanos": 10**6}
    ),
    "/baton.v1.WorkerService/Heartbeat": Row("steps.poll", "", {"worker_id": "matrix"}),
    "/baton.v1.WorkerService/CompleteStep": Row("steps.poll", "", {"worker_id": "matrix"}),
    "/baton.v1.WorkerService/FailStep": Row("steps.poll", "", {"worker_id": "matrix"}),
    "/baton.v1.AuthService/Login": Row(PUBLIC),
    "/baton.v1.AuthService/RefreshToken": Row(PUBLIC),
    "/baton.v1.AuthService/RevokeToken": Row(PUBLIC),
    "/baton.v1.AuthService/WhoAmI": Row(ANY_AUTHENTICATED),
    "/baton.v1.UserService/CreateUser": Row("users.admin"),  # empty user: INVALID_ARGUMENT, nothing created
    "/baton.v1.UserService/GetUser": Row("users.admin", "", {"id": NEW_ID}),
    "/baton.v1.UserService/ListUsers": Row("users.admin"),
    "/baton.v1.UserService/UpdateUser": Row(
        "users.admin", "", {"user.id": NEW_ID, "user.display_name": "x", "update_mask.paths": ["display_name"]}
    ),
    "/baton.v1.UserService/DeleteUser": Row("users.admin", "", {"id": NEW_ID}),
    "/baton.v1.UserService/CreateApiKey": Row("users.admin", "", {"user_id": NEW_ID}),
    "/baton.v1.UserService/ListApiKeys": Row("users.admin", "", {"user_id": NEW_ID}),
    "/baton.v1.UserService/RevokeApiKey": Row("users.admin", "", {"id": NEW_ID}),
    "/baton.v1.AdminService/GetStatus": Row("status.read"),
    "/baton.v1.AdminService/ListAuditEvents": Row("audit.read"),
}

POLICIES = load_policies()
METHODS: dict[str, MethodDescriptor] = {
    f"/{service.full_name}/{method.name}": method
    for file in API_FILES
    for service in file.services_by_name.values()
    for method in service.methods
}

REACHABLE, UNAUTHENTICATED, DENIED = "reachable", "UNAUTHENTICATED", "PERMISSION_DENIED"


@dataclass(frozen=True)
class Caller:
    """Who calls, with which credentials, naming which namespace where the request has one."""

    name: str
    bindings: tuple[tuple[Role, str | None], ...] = ()
    namespace: str = "payments"
    credentials: str = "valid"  # valid | none | disabled | revoked


CALLERS = (
    Caller("anonymous", credentials="none"),
    Caller("admin", ((Role.ADMIN, None),)),
    Caller("operator", ((Role.OPERATOR, None),)),
    Caller("developer", ((Role.DEVELOPER, None),)),
    Caller("worker", ((Role.WORKER, None),)),
    Caller("viewer", ((Role.VIEWER, None),)),
    Caller("developer@payments in shipping", ((Role.DEVELOPER, "payments"),), namespace="shipping"),
    Caller("developer@payments in payments", ((Role.DEVELOPER, "payments"),), namespace="payments"),
    Caller("disabled admin", ((Role.ADMIN, None),), credentials="disabled"),
    Caller("admin with a revoked key", ((Role.ADMIN, None),), credentials="revoked"),
)


def expected(policy: MethodPolicy, caller: Caller) -> str:
    """The outcome the contract and the role table call for."""
    if policy.public:
        return REACHABLE  # credentials are not even looked at
    if caller.credentials != "valid":
        return UNAUTHENTICATED
    if not policy.permission:
        return REACHABLE
    for role, namespace in caller.bindings:
        if policy.permission not in ROLE_PERMISSIONS[role]:
            continue
        if namespace is None:
            return REACHABLE
        if policy.permission in GLOBAL_ONLY:
            continue
        if not policy.namespace_field or caller.namespace == namespace:
            return REACHABLE
    return DENIED


def outcome(code: grpc.StatusCode) -> str:
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return UNAUTHENTICATED
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return DENIED
    return REACHABLE  # OK, or the handler's own answer: UNIMPLEMENTED, INVALID_ARGUMENT, NOT_FOUND, ...


def set_path(message: Any, path: str, value: Any) -> None:
    *parents, name = path.split(".")
    for part in parents:
        message = getattr(message, part)
    if isinstance(value, list):
        getattr(message, name).extend(value)
    else:
        setattr(message, name, value)


def build_request(full_method: str, namespace: str) -> Any:
    row, policy = ROWS[full_method], POLICIES[full_method]
    request = GetMessageClass(METHODS[full_method].input_type)()
    for path, value in row.fields.items():
        set_path(request, path, str(uuid.uuid4()) if value == NEW_ID else value)
    if policy.namespace_field:
        set_path(request, policy.namespace_field, namespace)
    return request


async def invoke(channel: grpc.aio.Channel, full_method: str, request: Any, metadata: Metadata) -> grpc.StatusCode:
    """Call any Baton RPC by name; the status code it ends with."""
    method = METHODS[full_method]
    options = {
        "request_serializer": type(request).SerializeToString,
        "response_deserializer": GetMessageClass(method.output_type).FromString,
    }
    try:
        if method.server_streaming:
            factory = channel.stream_stream if method.client_streaming else channel.unary_stream
            argument = iter([request]) if method.client_streaming else request
            call = factory(full_method, **options)(argument, metadata=metadata, timeout=5)
            async for _ in call:
                call.cancel()  # one message shows the call got through
                break
        elif method.client_streaming:
            await channel.stream_unary(full_method, **options)(iter([request]), metadata=metadata, timeout=5)
        else:
            await channel.unary_unary(full_method, **options)(request, metadata=metadata, timeout=5)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@dataclass
class Matrix:
    running: RunningServer
    metadata: dict[str, Metadata]

    async def call(self, full_method: str, caller: Caller) -> grpc.StatusCode:
        request = build_request(full_method, caller.namespace)
        return await invoke(self.running.channel, full_method, request, self.metadata[caller.name])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def matrix(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Matrix]:
    """One server for the module, with one principal per caller kind."""
    config = config_for(Path(tmp_path_factory.mktemp("matrix")))
    async with start_server(config) as running:
        metadata: dict[str, Metadata] = {"anonymous": (), "admin": running.admin}
        for role in ("operator", "developer", "worker", "viewer"):
            metadata[role] = (await create_account(running, f"matrix-{role}", role)).metadata
        scoped = await create_account(running, "matrix-dev-payments", "developer@payments")
        metadata["developer@payments in shipping"] = metadata["developer@payments in payments"] = scoped.metadata
        disabled = await create_account(running, "matrix-disabled", "admin")
        await disable_user(running, disabled.user)
        metadata["disabled admin"] = disabled.metadata
        revoked = await create_account(running, "matrix-revoked", "admin")
        await revoke_key(running, revoked.key_id)
        metadata["admin with a revoked key"] = revoked.metadata
        yield Matrix(running, metadata)


def test_rows_cover_exactly_the_policy_table() -> None:
    assert sorted(ROWS) == sorted(POLICIES), "every RPC of the contract needs a row in ROWS, and only those"
    assert sorted(METHODS) == sorted(POLICIES)


@pytest.mark.parametrize("full_method", sorted(set(ROWS) | set(POLICIES)))
def test_row_matches_the_contract(full_method: str) -> None:
    assert full_method in ROWS, f"{full_method} has no row in the authorization matrix"
    assert full_method in POLICIES, f"{full_method} has a row but is not in the contract"
    row, policy = ROWS[full_method], POLICIES[full_method]
    assert policy.public == (row.permission == PUBLIC)
    assert policy.permission == ("" if policy.public else row.permission)
    assert policy.namespace_field == row.namespace_field


@module_loop
@pytest.mark.parametrize("full_method", sorted(set(ROWS) | set(POLICIES)))
async def test_matrix(matrix: Matrix, full_method: str) -> None:
    assert full_method in ROWS
    assert full_method in POLICIES
    policy = POLICIES[full_method]
    table, wrong = [], []
    for caller in CALLERS:
        code = await matrix.call(full_method, caller)
        want, got = expected(policy, caller), outcome(code)
        table.append(f"  {caller.name:34} expected {want:18} got {code.name}")
        if want != got:
            wrong.append(caller.name)
    report = "\n".join(table)
    assert not wrong, f"{full_method} (permission {policy.permission!r}): wrong for {wrong}\n{report}"


def test_the_matrix_is_not_trivial() -> None:
    """The computed expectations exercise every outcome, and namespace scoping both ways."""
    outcomes = {(name, caller.name): expected(POLICIES[name], caller) for name in POLICIES for caller in CALLERS}
    assert {REACHABLE, UNAUTHENTICATED, DENIED} == set(outcomes.values())
    assert outcomes["/baton.v1.TaskService/CreateTask", "developer@payments in shipping"] == DENIED
    assert outcomes["/baton.v1.TaskService/CreateTask", "developer@payments in payments"] == REACHABLE
    assert outcomes["/baton.v1.TaskService/GetTask", "developer@payments in shipping"] == REACHABLE


SPOT_CHECKS = [
    ("viewer", "/baton.v1.TaskService/CreateTask", {grpc.StatusCode.PERMISSION_DENIED}),
    ("viewer", "/baton.v1.HandlerService/RegisterHandler", {grpc.StatusCode.PERMISSION_DENIED}),
    ("worker", "/baton.v1.TaskService/GetTask", {grpc.StatusCode.PERMISSION_DENIED}),
    ("developer", "/baton.v1.WorkerService/PollSteps", {grpc.StatusCode.PERMISSION_DENIED}),
    ("operator", "/baton.v1.AdminService/GetStatus", {grpc.StatusCode.OK}),
    ("operator", "/baton.v1.AdminService/ListAuditEvents", {grpc.StatusCode.OK}),
    ("developer", "/baton.v1.AdminService/GetStatus", {grpc.StatusCode.PERMISSION_DENIED}),
    ("developer@payments in payments", "/baton.v1.AdminService/GetStatus", {grpc.StatusCode.PERMISSION_DENIED}),
    ("viewer", "/baton.v1.AuthService/WhoAmI", {grpc.StatusCode.OK}),
    ("anonymous", "/baton.v1.AuthService/WhoAmI", {grpc.StatusCode.UNAUTHENTICATED}),
    ("anonymous", "/baton.v1.AuthService/Login", {grpc.StatusCode.INVALID_ARGUMENT}),
    ("anonymous", "/baton.v1.AuthService/RefreshToken", {grpc.StatusCode.INVALID_ARGUMENT}),
    ("anonymous", "/baton.v1.AuthService/RevokeToken", {grpc.StatusCode.INVALID_ARGUMENT}),
    ("admin with a revoked key", "/baton.v1.AuthService/Login", {grpc.StatusCode.INVALID_ARGUMENT}),
    ("admin", "/baton.v1.UserService/GetUser", {grpc.StatusCode.NOT_FOUND}),
    ("admin", "/baton.v1.UserService/RevokeApiKey", {grpc.StatusCode.NOT_FOUND}),
    ("disabled admin", "/baton.v1.UserService/ListUsers", {grpc.StatusCode.UNAUTHENTICATED}),
]


@module_loop
@pytest.mark.parametrize(("caller_name", "full_method", "codes"), SPOT_CHECKS)
async def test_spot_check(matrix: Matrix, caller_name: str, full_method: str, codes: set[grpc.StatusCode]) -> None:
    [caller] = [c for c in CALLERS if c.name == caller_name]
    assert await matrix.call(full_method, caller) in codes


@module_loop
async def test_worker_can_poll_steps(matrix: Matrix) -> None:
    [worker] = [c for c in CALLERS if c.name == "worker"]
    code = await matrix.call("/baton.v1.WorkerService/PollSteps", worker)
    assert code not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


@module_loop
async def test_only_admin_can_create_users(matrix: Matrix) -> None:
    codes = {c.name: await matrix.call("/baton.v1.UserService/CreateUser", c) for c in CALLERS}
    assert codes.pop("admin") == grpc.StatusCode.INVALID_ARGUMENT  # reached the servicer: the user is empty
    assert codes.pop("anonymous") == grpc.StatusCode.UNAUTHENTICATED
    assert codes.pop("disabled admin") == grpc.StatusCode.UNAUTHENTICATED
    assert codes.pop("admin with a revoked key") == grpc.StatusCode.UNAUTHENTICATED
    assert set(codes.values()) == {grpc.StatusCode.PERMISSION_DENIED}, codes
