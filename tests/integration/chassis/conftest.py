"""Helpers for the chassis tests: principals made through UserService, rich-error decoding, extra servers, Redis.

Everything goes through a real server: users and keys are created with the bootstrap admin's key over gRPC.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from baton.config import Config
from baton.server.app import BatonServer
from baton.store import open_store
from baton.v1 import admin_pb2, admin_pb2_grpc, auth_pb2, auth_pb2_grpc, users_pb2, users_pb2_grpc
from tests.support.accounts import (  # noqa: F401 - re-exported for the chassis tests
    PASSWORD,
    ROLES,
    Account,
    Metadata,
    RichError,
    api_key,
    bearer,
    bindings,
    create_account,
    create_key,
    create_user,
    rich,
    rich_error,
    rpc_error,
)
from tests.support.redis import RedisServer, new_redis_server
from tests.support.server import RunningServer, make_config


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
