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


@dataclass
class Account:
    """A service account made through UserService, with one API key."""

    user: users_pb2.User
    key: str

    @property
    def metadata(self) -> Metadata:
        """Call metadata authenticating with the account's key."""
        return (("x-api-key", self.key),)


def bindings(*specs: str) -> list[users_pb2.RoleBinding]:
    """Role bindings from "role" (global) or "role@namespace" specs."""
    result = []
    for spec in specs:
        role, _, namespace = spec.partition("@")
        result.append(users_pb2.RoleBinding(role=ROLES[role], namespace=namespace))
    return result


async def create_account(running: RunningServer, username: str, *roles: str) -> Account:
    """A service account with the given role specs ("viewer", "developer@payments") and one API key."""
    stub = users_pb2_grpc.UserServiceStub(running.channel)
    user = await stub.CreateUser(
        users_pb2.CreateUserRequest(
            user=users_pb2.User(
                username=username,
                display_name=username,
                kind=users_pb2.USER_KIND_SERVICE_ACCOUNT,
                role_bindings=bindings(*roles),
            )
        ),
        metadata=running.admin,
        timeout=10,
    )
    created = await stub.CreateApiKey(
        users_pb2.CreateApiKeyRequest(user_id=user.id, display_name="test key"), metadata=running.admin, timeout=10
    )
    return Account(user, created.key)


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

    @property
    def message(self) -> str:
        """The status message."""
        return str(self.status.message)

    @property
    def info(self) -> error_details_pb2.ErrorInfo:
        """The ErrorInfo detail."""
        return self.detail(error_details_pb2.ErrorInfo)

    @property
    def resource(self) -> error_details_pb2.ResourceInfo:
        """The ResourceInfo detail."""
        return self.detail(error_details_pb2.ResourceInfo)

    @property
    def violations(self) -> dict[str, str]:
        """BadRequest field violations as {field: description}."""
        bad = self.detail(error_details_pb2.BadRequest)
        return {v.field: v.description for v in bad.field_violations}


async def rich_error(call: Awaitable[Any], code: grpc.StatusCode) -> RichError:
    """The rich status a call fails with (fails the test when the call succeeds or ends with another code)."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = caught.value
    assert error.code() == code, f"{error.code()}: {error.details()}"
    status = rpc_status.from_call(error)
    assert status is not None, f"{error.code()} carries no google.rpc.Status: {error.details()}"
    return RichError(status, error)
