"""Helpers for the chassis tests: principals made through UserService, rich-error decoding, extra servers, Redis.

Everything goes through a real server: users and keys are created with the bootstrap admin's key over gRPC.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from baton.config import Config
from baton.server.app import BatonServer
from baton.store import open_store
from baton.v1 import admin_pb2, admin_pb2_grpc, auth_pb2, auth_pb2_grpc, common_pb2, users_pb2, users_pb2_grpc
from tests.support.redis import RedisServer, new_redis_server
from tests.support.server import RunningServer, make_config

Metadata = tuple[tuple[str, str], ...]

ROLES = {
    "admin": common_pb2.ROLE_ADMIN,
    "operator": common_pb2.ROLE_OPERATOR,
    "developer": common_pb2.ROLE_DEVELOPER,
    "worker": common_pb2.ROLE_WORKER,
    "viewer": common_pb2.ROLE_VIEWER,
}
PASSWORD = "correct horse battery staple"


def api_key(key: str) -> Metadata:
    """Call metadata authenticating with an API key."""
    return (("x-api-key", key),)


def bearer(token: str) -> Metadata:
    """Call metadata authenticating with an access token."""
    return (("authorization", f"Bearer {token}"),)


# --- principals -------------------------------------------------------------------------------------------------


@dataclass
class Account:
    """A user made through UserService, with an API key (and a password for people)."""

    user: users_pb2.User
    key: str
    key_id: str
    password: str = ""

    @property
    def metadata(self) -> Metadata:
        return api_key(self.key)


def bindings(*specs: str) -> list[users_pb2.RoleBinding]:
    """Role bindings from "role" (global) or "role@namespace" specs."""
    result = []
    for spec in specs:
        role, _, namespace = spec.partition("@")
        result.append(users_pb2.RoleBinding(role=ROLES[role], namespace=namespace))
    return result


async def create_user(
    running: RunningServer, username: str, *roles: str, human: bool = False, password: str = PASSWORD
) -> users_pb2.User:
    """A user with the given role specs ("viewer", "developer@payments"), created by the bootstrap admin."""
    stub = users_pb2_grpc.UserServiceStub(running.channel)
    kind = users_pb2.USER_KIND_HUMAN if human else users_pb2.USER_KIND_SERVICE_ACCOUNT
    request = users_pb2.CreateUserRequest(
        user=users_pb2.User(username=username, display_name=username, kind=kind, role_bindings=bindings(*roles)),
        password=password if human else "",
    )
    return await stub.CreateUser(request, metadata=running.admin, timeout=10)


async def create_key(running: RunningServer, user_id: str) -> users_pb2.CreateApiKeyResponse:
    """A new API key for a user."""
    stub = users_pb2_grpc.UserServiceStub(running.channel)
    request = users_pb2.CreateApiKeyRequest(user_id=user_id, display_name="test key")
    return await stub.CreateApiKey(request, metadata=running.admin, timeout=10)


async def create_account(running: RunningServer, username: str, *roles: str, human: bool = False) -> Account:
    """A user with the given roles and one API key."""
    user = await create_user(running, username, *roles, human=human)
    created = await create_key(running, user.id)
    return Account(user, created.key, created.api_key.id, PASSWORD if human else "")


async def revoke_key(running: RunningServer, key_id: str) -> users_pb2.ApiKey:
    stub = users_pb2_grpc.UserServiceStub(running.channel)
    return await stub.RevokeApiKey(users_pb2.RevokeApiKeyRequest(id=key_id), metadata=running.admin, timeout=10)


async def update_user(running: RunningServer, user: users_pb2.User, *paths: str, password: str = "") -> users_pb2.User:
    stub = users_pb2_grpc.UserServiceStub(running.channel)
    request = users_pb2.UpdateUserRequest(
        user=user, update_mask=field_mask_pb2.FieldMask(paths=list(paths)), password=password
    )
    return await stub.UpdateUser(request, metadata=running.admin, timeout=10)


async def disable_user(running: RunningServer, user: users_pb2.User) -> users_pb2.User:
    changed = users_pb2.User()
    changed.CopyFrom(user)
    changed.disabled = True
    return await update_user(running, changed, "disabled")


async def login(running: RunningServer, username: str, password: str = PASSWORD) -> auth_pb2.LoginResponse:
    stub = auth_pb2_grpc.AuthServiceStub(running.channel)
    return await stub.Login(auth_pb2.LoginRequest(username=username, password=password), timeout=10)


async def who_am_i(running: RunningServer, metadata: Metadata) -> auth_pb2.WhoAmIResponse:
    stub = auth_pb2_grpc.AuthServiceStub(running.channel)
    return await stub.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=metadata, timeout=5)


# --- errors -----------------------------------------------------------------------------------------------------


async def rpc_error(call: Awaitable[Any], code: grpc.StatusCode | None = None) -> grpc.aio.AioRpcError:
    """The error a call ends with (fails when it succeeds, or ends with another code than `code`)."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    if code is not None:
        assert caught.value.code() == code, f"{caught.value.code()}: {caught.value.details()}"
    return caught.value


@dataclass
class RichError:
    """The google.rpc.Status of a failed call, with its details unpacked by type."""

    status: status_pb2.Status
    error: grpc.aio.AioRpcError

    def detail(self, kind: type[Any]) -> Any:
        """The one detail of `kind` (fails when there is none or several)."""
        found = []
        for any_detail in self.status.details:
            if any_detail.Is(kind.DESCRIPTOR):
                message = kind()
                any_detail.Unpack(message)
                found.append(message)
        assert len(found) == 1, f"expected one {kind.__name__} in {self.status}"
        return found[0]

    def has(self, kind: type[Any]) -> bool:
        return any(detail.Is(kind.DESCRIPTOR) for detail in self.status.details)

    @property
    def info(self) -> error_details_pb2.ErrorInfo:
        return self.detail(error_details_pb2.ErrorInfo)

    @property
    def request_id(self) -> str:
        return str(self.detail(error_details_pb2.RequestInfo).request_id)

    @property
    def violations(self) -> dict[str, str]:
        bad = self.detail(error_details_pb2.BadRequest)
        return {v.field: v.description for v in bad.field_violations}


def rich(error: grpc.aio.AioRpcError) -> RichError:
    status = rpc_status.from_call(error)
    assert status is not None, f"{error.code()} carries no google.rpc.Status: {error.details()}"
    assert status.code == error.code().value[0]
    return RichError(status, error)


async def rich_error(call: Awaitable[Any], code: grpc.StatusCode) -> RichError:
    return rich(await rpc_error(call, code))


def metadata_value(metadata: Sequence[tuple[str, Any]] | None, key: str) -> list[str]:
    return [str(value) for name, value in (metadata or ()) if name == key]


# --- audit ------------------------------------------------------------------------------------------------------


async def audit_events(
    running: RunningServer, filter: str, *, at_least: int = 1, within: float = 5.0
) -> list[admin_pb2.AuditEvent]:
    """Audit events matching `filter`, read with the admin key; waits for the batch writer to store them."""
    stub = admin_pb2_grpc.AdminServiceStub(running.channel)
    deadline = time.monotonic() + within
    while True:
        response = await stub.ListAuditEvents(
            admin_pb2.ListAuditEventsRequest(filter=filter, page_size=1000), metadata=running.admin, timeout=5
        )
        events = list(response.audit_events)
        if len(events) >= at_least or time.monotonic() > deadline:
            return events
        await asyncio.sleep(0.05)


# --- more servers -----------------------------------------------------------------------------------------------


@asynccontextmanager
async def start_server(
    config: Config, *, host: str = "127.0.0.1", channel_target: str | None = None, **runtime_options: Any
) -> AsyncIterator[RunningServer]:
    """A server built the way tests/support/server.py builds one, for tests that need a second server or
    options the `server` fixture does not take (a tracer provider, logging configured first)."""
    store = await open_store(config.storage, auto_migrate=True)
    baton = await BatonServer.create(config, store, **runtime_options)
    try:
        port = await baton.start(host=host, port=0)
        target = (channel_target or "127.0.0.1:{port}").format(port=port)
        channel = grpc.aio.insecure_channel(target)
        try:
            yield RunningServer(server=baton, target=target, channel=channel, config=config)
        finally:
            await channel.close()
    finally:
        await baton.stop(grace=0.5, drain=0)
        await store.close()


def config_for(tmp_path: Path, **env: str) -> Config:
    """make_config with a database in tmp_path (servers given the same tmp_path share one SQLite file)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    return make_config(tmp_path, **env)


# --- Redis (the pattern of tests/integration/ratelimit/conftest.py) ---------------------------------------------

REDIS_PASSWORD = "chassis-redis-pw"


@pytest.fixture
def chassis_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test only, with a password; fails (never skips) when redis-server is missing."""
    server = new_redis_server(tmp_path / "redis", password=REDIS_PASSWORD)
    server.start()
    try:
        yield server
    finally:
        server.kill()
