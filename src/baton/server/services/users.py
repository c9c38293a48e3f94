"""UserService: users, service accounts, their roles and their API keys."""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2

from baton.auth.manager import Actor, AuthManager, UserChanges
from baton.errors import FieldViolation, InvalidArgument
from baton.server.convert import from_timestamp
from baton.server.interceptors.base import current_call
from baton.server.services.users_convert import (
    api_key_to_proto,
    kind_from_proto,
    role_bindings_from_proto,
    user_to_proto,
)
from baton.v1 import users_pb2, users_pb2_grpc


def _actor() -> Actor:
    call = current_call()
    if call is None:
        return Actor()
    return Actor(call.principal.id if call.principal else None, call.peer, call.request_id)


def _required(value: str, field: str) -> None:
    if not value:
        raise InvalidArgument(f"{field} is required", field_violations=[FieldViolation(field, "must not be empty")])


class UserService(users_pb2_grpc.UserServiceServicer):
    """Converts and delegates to the AuthManager."""

    def __init__(self, manager: AuthManager) -> None:
        self._manager = manager

    async def CreateUser(self, request: users_pb2.CreateUserRequest, context: Any) -> users_pb2.User:
        """Create a user or service account."""
        user = request.user
        created = await self._manager.create_user(
            user.username,
            user.display_name,
            kind_from_proto(user.kind),
            role_bindings_from_proto(list(user.role_bindings), "user.role_bindings"),
            request.password,
            actor=_actor(),
        )
        return user_to_proto(created)

    async def GetUser(self, request: users_pb2.GetUserRequest, context: Any) -> users_pb2.User:
        """One user."""
        _required(request.id, "id")
        return user_to_proto(await self._manager.get_user(request.id))

    async def ListUsers(self, request: users_pb2.ListUsersRequest, context: Any) -> users_pb2.ListUsersResponse:
        """A page of users ordered by username."""
        users, token = await self._manager.list_users(request.page_size, request.page_token, request.show_disabled)
        return users_pb2.ListUsersResponse(users=[user_to_proto(u) for u in users], next_page_token=token)

    async def UpdateUser(self, request: users_pb2.UpdateUserRequest, context: Any) -> users_pb2.User:
        """Apply the fields named in update_mask."""
        _required(request.user.id, "user.id")
        paths = list(request.update_mask.paths)
        if not paths:
            raise InvalidArgument(
                "update_mask is required",
                field_violations=[FieldViolation("update_mask", "name the fields to update, or use *")],
            )
        changes = UserChanges(
            display_name=request.user.display_name,
            role_bindings=tuple(role_bindings_from_proto(list(request.user.role_bindings), "user.role_bindings")),
            disabled=request.user.disabled,
            password=request.password,
        )
        updated = await self._manager.update_user(request.user.id, changes, paths, request.user.etag, actor=_actor())
        return user_to_proto(updated)

    async def DeleteUser(self, request: users_pb2.DeleteUserRequest, context: Any) -> empty_pb2.Empty:
        """Delete a user with its keys and tokens."""
        _required(request.id, "id")
        await self._manager.delete_user(request.id, request.etag, actor=_actor())
        return empty_pb2.Empty()

    async def CreateApiKey(
        self, request: users_pb2.CreateApiKeyRequest, context: Any
    ) -> users_pb2.CreateApiKeyResponse:
        """A new key; the key itself is in this response only."""
        _required(request.user_id, "user_id")
        expire_time = from_timestamp(request.expire_time) if request.HasField("expire_time") else None
        record, key = await self._manager.create_api_key(
            request.user_id, request.display_name, expire_time, actor=_actor()
        )
        return users_pb2.CreateApiKeyResponse(api_key=api_key_to_proto(record), key=key)

    async def ListApiKeys(self, request: users_pb2.ListApiKeysRequest, context: Any) -> users_pb2.ListApiKeysResponse:
        """A page of a user's keys."""
        _required(request.user_id, "user_id")
        keys, token = await self._manager.list_api_keys(
            request.user_id, request.page_size, request.page_token, request.show_revoked
        )
        return users_pb2.ListApiKeysResponse(api_keys=[api_key_to_proto(k) for k in keys], next_page_token=token)

    async def RevokeApiKey(self, request: users_pb2.RevokeApiKeyRequest, context: Any) -> users_pb2.ApiKey:
        """Revoke a key (idempotent)."""
        _required(request.id, "id")
        return api_key_to_proto(await self._manager.revoke_api_key(request.id, actor=_actor()))
