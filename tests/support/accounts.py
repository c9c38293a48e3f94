"""Principals and rich errors for integration tests: users with role bindings and API keys made through the real
server by the bootstrap admin, and google.rpc.Status details unpacked by type."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from baton.v1 import common_pb2, users_pb2, users_pb2_grpc
from tests.support.server import RunningServer

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
    def message(self) -> str:
        """The status message."""
        return str(self.status.message)

    @property
    def request_id(self) -> str:
        return str(self.detail(error_details_pb2.RequestInfo).request_id)

    @property
    def resource(self) -> error_details_pb2.ResourceInfo:
        return self.detail(error_details_pb2.ResourceInfo)

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
