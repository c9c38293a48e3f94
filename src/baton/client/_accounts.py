"""AuthService, UserService and AdminService for both clients: tokens, users and API keys, server status."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Unpack

from baton.client._async_transport import AsyncTransport
from baton.client._convert import field_mask
from baton.client._methods import spec
from baton.client._options import CallOptions
from baton.client._sync_transport import SyncTransport
from baton_betterproto.baton.v1 import (
    AdminServiceAsyncStub,
    AdminServiceStub,
    ApiKey,
    AuthServiceAsyncStub,
    AuthServiceStub,
    CreateApiKeyRequest,
    CreateApiKeyResponse,
    CreateUserRequest,
    DeleteUserRequest,
    GetStatusRequest,
    GetUserRequest,
    ListApiKeysRequest,
    ListApiKeysResponse,
    ListAuditEventsRequest,
    ListAuditEventsResponse,
    ListUsersRequest,
    ListUsersResponse,
    LoginRequest,
    LoginResponse,
    RefreshTokenRequest,
    RefreshTokenResponse,
    RevokeApiKeyRequest,
    RevokeTokenRequest,
    ServerStatus,
    UpdateUserRequest,
    User,
    UserServiceAsyncStub,
    UserServiceStub,
    WhoAmIRequest,
    WhoAmIResponse,
)

LOGIN, REFRESH = spec("AuthService", "Login"), spec("AuthService", "RefreshToken")
REVOKE_TOKEN, WHO_AM_I = spec("AuthService", "RevokeToken"), spec("AuthService", "WhoAmI")
CREATE_USER, GET_USER, LIST_USERS = (
    spec("UserService", "CreateUser"),
    spec("UserService", "GetUser"),
    spec("UserService", "ListUsers"),
)
UPDATE_USER, DELETE_USER = spec("UserService", "UpdateUser"), spec("UserService", "DeleteUser")
CREATE_KEY, LIST_KEYS = spec("UserService", "CreateApiKey"), spec("UserService", "ListApiKeys")
REVOKE_KEY = spec("UserService", "RevokeApiKey")
STATUS, AUDIT = spec("AdminService", "GetStatus"), spec("AdminService", "ListAuditEvents")


class Auth:
    """AuthService through the sync client. `Client.connect(username=..., password=...)` logs in and refreshes
    by itself; these methods are for managing tokens by hand."""

    def __init__(self, transport: SyncTransport) -> None:
        self._rpc = transport
        self._stub = AuthServiceStub(transport.channel)

    def login(self, username: str, password: str, **options: Unpack[CallOptions]) -> LoginResponse:
        """Exchange a username and password for an access token and a refresh token."""
        request = LoginRequest(username=username, password=password)
        return self._rpc.unary(LOGIN, self._stub.login, request, options)

    def refresh_token(self, refresh_token: str, **options: Unpack[CallOptions]) -> RefreshTokenResponse:
        """Spend a refresh token for new tokens (the refresh token rotates)."""
        request = RefreshTokenRequest(refresh_token=refresh_token)
        return self._rpc.unary(REFRESH, self._stub.refresh_token, request, options)

    def revoke_token(self, refresh_token: str, **options: Unpack[CallOptions]) -> None:
        """Revoke a refresh token and every token rotated from the same login."""
        request = RevokeTokenRequest(refresh_token=refresh_token)
        self._rpc.unary(REVOKE_TOKEN, self._stub.revoke_token, request, options)

    def who_am_i(self, **options: Unpack[CallOptions]) -> WhoAmIResponse:
        """The calling principal, how it authenticated and its effective permissions."""
        return self._rpc.unary(WHO_AM_I, self._stub.who_am_i, WhoAmIRequest(), options)


class Users:
    """UserService through the sync client (needs `users.admin`)."""

    def __init__(self, transport: SyncTransport) -> None:
        self._rpc = transport
        self._stub = UserServiceStub(transport.channel)

    def create(self, user: User, *, password: str = "", **options: Unpack[CallOptions]) -> User:
        """Create a user (a password for humans)."""
        request = CreateUserRequest(user=user, password=password)
        return self._rpc.unary(CREATE_USER, self._stub.create_user, request, options)

    def get(self, user_id: str, **options: Unpack[CallOptions]) -> User:
        """A user by ID."""
        return self._rpc.unary(GET_USER, self._stub.get_user, GetUserRequest(id=user_id), options)

    def list(
        self, *, page_size: int = 0, page_token: str = "", show_disabled: bool = False, **options: Unpack[CallOptions]
    ) -> ListUsersResponse:
        """One page of users."""
        request = ListUsersRequest(page_size=page_size, page_token=page_token, show_disabled=show_disabled)
        return self._rpc.unary(LIST_USERS, self._stub.list_users, request, options)

    def update(
        self, user: User, update_mask: Sequence[str], *, password: str = "", **options: Unpack[CallOptions]
    ) -> User:
        """Update the fields of `user` named in `update_mask` (and the password when given)."""
        request = UpdateUserRequest(user=user, update_mask=field_mask(update_mask), password=password)
        return self._rpc.unary(UPDATE_USER, self._stub.update_user, request, options)

    def delete(self, user_id: str, *, etag: str = "", **options: Unpack[CallOptions]) -> None:
        """Delete a user."""
        self._rpc.unary(DELETE_USER, self._stub.delete_user, DeleteUserRequest(id=user_id, etag=etag), options)

    def create_api_key(
        self,
        user_id: str,
        display_name: str = "",
        *,
        expire_time: datetime.datetime | None = None,
        **options: Unpack[CallOptions],
    ) -> CreateApiKeyResponse:
        """A new API key for a user; `.key` is shown only in this response."""
        request = CreateApiKeyRequest(user_id=user_id, display_name=display_name, expire_time=expire_time)
        return self._rpc.unary(CREATE_KEY, self._stub.create_api_key, request, options)

    def list_api_keys(
        self,
        user_id: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        show_revoked: bool = False,
        **options: Unpack[CallOptions],
    ) -> ListApiKeysResponse:
        """One page of a user's API keys (without their secrets)."""
        request = ListApiKeysRequest(
            user_id=user_id, page_size=page_size, page_token=page_token, show_revoked=show_revoked
        )
        return self._rpc.unary(LIST_KEYS, self._stub.list_api_keys, request, options)

    def revoke_api_key(self, key_id: str, **options: Unpack[CallOptions]) -> ApiKey:
        """Revoke an API key (idempotent)."""
        return self._rpc.unary(REVOKE_KEY, self._stub.revoke_api_key, RevokeApiKeyRequest(id=key_id), options)


class Admin:
    """AdminService through the sync client."""

    def __init__(self, transport: SyncTransport) -> None:
        self._rpc = transport
        self._stub = AdminServiceStub(transport.channel)

    def get_status(self, **options: Unpack[CallOptions]) -> ServerStatus:
        """The server's detailed status (needs `status.read`)."""
        return self._rpc.unary(STATUS, self._stub.get_status, GetStatusRequest(), options)

    def list_audit_events(
        self, *, filter: str = "", page_size: int = 0, page_token: str = "", **options: Unpack[CallOptions]
    ) -> ListAuditEventsResponse:
        """One page of audit events, newest first, with a filter (needs `audit.read`)."""
        request = ListAuditEventsRequest(filter=filter, page_size=page_size, page_token=page_token)
        return self._rpc.unary(AUDIT, self._stub.list_audit_events, request, options)


class AsyncAuth:
    """AuthService through the async client."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._rpc = transport
        self._stub = AuthServiceAsyncStub(transport.channel)

    async def login(self, username: str, password: str, **options: Unpack[CallOptions]) -> LoginResponse:
        """Exchange a username and password for an access token and a refresh token."""
        request = LoginRequest(username=username, password=password)
        return await self._rpc.unary(LOGIN, self._stub.login, request, options)

    async def refresh_token(self, refresh_token: str, **options: Unpack[CallOptions]) -> RefreshTokenResponse:
        """Spend a refresh token for new tokens (the refresh token rotates)."""
        request = RefreshTokenRequest(refresh_token=refresh_token)
        return await self._rpc.unary(REFRESH, self._stub.refresh_token, request, options)

    async def revoke_token(self, refresh_token: str, **options: Unpack[CallOptions]) -> None:
        """Revoke a refresh token and every token rotated from the same login."""
        request = RevokeTokenRequest(refresh_token=refresh_token)
        await self._rpc.unary(REVOKE_TOKEN, self._stub.revoke_token, request, options)

    async def who_am_i(self, **options: Unpack[CallOptions]) -> WhoAmIResponse:
        """The calling principal, how it authenticated and its effective permissions."""
        return await self._rpc.unary(WHO_AM_I, self._stub.who_am_i, WhoAmIRequest(), options)


class AsyncUsers:
    """UserService through the async client (needs `users.admin`)."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._rpc = transport
        self._stub = UserServiceAsyncStub(transport.channel)

    async def create(self, user: User, *, password: str = "", **options: Unpack[CallOptions]) -> User:
        """Create a user (a password for humans)."""
        request = CreateUserRequest(user=user, password=password)
        return await self._rpc.unary(CREATE_USER, self._stub.create_user, request, options)

    async def get(self, user_id: str, **options: Unpack[CallOptions]) -> User:
        """A user by ID."""
        return await self._rpc.unary(GET_USER, self._stub.get_user, GetUserRequest(id=user_id), options)

    async def list(
        self, *, page_size: int = 0, page_token: str = "", show_disabled: bool = False, **options: Unpack[CallOptions]
    ) -> ListUsersResponse:
        """One page of users."""
        request = ListUsersRequest(page_size=page_size, page_token=page_token, show_disabled=show_disabled)
        return await self._rpc.unary(LIST_USERS, self._stub.list_users, request, options)

    async def update(
        self, user: User, update_mask: Sequence[str], *, password: str = "", **options: Unpack[CallOptions]
    ) -> User:
        """Update the fields of `user` named in `update_mask` (and the password when given)."""
        request = UpdateUserRequest(user=user, update_mask=field_mask(update_mask), password=password)
        return await self._rpc.unary(UPDATE_USER, self._stub.update_user, request, options)

    async def delete(self, user_id: str, *, etag: str = "", **options: Unpack[CallOptions]) -> None:
        """Delete a user."""
        request = DeleteUserRequest(id=user_id, etag=etag)
        await self._rpc.unary(DELETE_USER, self._stub.delete_user, request, options)

    async def create_api_key(
        self,
        user_id: str,
        display_name: str = "",
        *,
        expire_time: datetime.datetime | None = None,
        **options: Unpack[CallOptions],
    ) -> CreateApiKeyResponse:
        """A new API key for a user; `.key` is shown only in this response."""
        request = CreateApiKeyRequest(user_id=user_id, display_name=display_name, expire_time=expire_time)
        return await self._rpc.unary(CREATE_KEY, self._stub.create_api_key, request, options)

    async def list_api_keys(
        self,
        user_id: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        show_revoked: bool = False,
        **options: Unpack[CallOptions],
    ) -> ListApiKeysResponse:
        """One page of a user's API keys (without their secrets)."""
        request = ListApiKeysRequest(
            user_id=user_id, page_size=page_size, page_token=page_token, show_revoked=show_revoked
        )
        return await self._rpc.unary(LIST_KEYS, self._stub.list_api_keys, request, options)

    async def revoke_api_key(self, key_id: str, **options: Unpack[CallOptions]) -> ApiKey:
        """Revoke an API key (idempotent)."""
        request = RevokeApiKeyRequest(id=key_id)
        return await self._rpc.unary(REVOKE_KEY, self._stub.revoke_api_key, request, options)


class AsyncAdmin:
    """AdminService through the async client."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._rpc = transport
        self._stub = AdminServiceAsyncStub(transport.channel)

    async def get_status(self, **options: Unpack[CallOptions]) -> ServerStatus:
        """The server's detailed status (needs `status.read`)."""
        return await self._rpc.unary(STATUS, self._stub.get_status, GetStatusRequest(), options)

    async def list_audit_events(
        self, *, filter: str = "", page_size: int = 0, page_token: str = "", **options: Unpack[CallOptions]
    ) -> ListAuditEventsResponse:
        """One page of audit events, newest first, with a filter (needs `audit.read`)."""
        request = ListAuditEventsRequest(filter=filter, page_size=page_size, page_token=page_token)
        return await self._rpc.unary(AUDIT, self._stub.list_audit_events, request, options)
