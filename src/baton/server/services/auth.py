"""AuthService: Login, RefreshToken, RevokeToken, WhoAmI."""

from __future__ import annotations

from typing import Any

from baton.auth.manager import AuthManager, TokenGrant
from baton.auth.principal import Principal
from baton.errors import FieldViolation, InvalidArgument, Unauthenticated
from baton.server.convert import timestamp
from baton.server.interceptors.base import current_call
from baton.server.services.users_convert import principal_to_proto, user_to_proto
from baton.v1 import auth_pb2, auth_pb2_grpc

_MAX_CACHED = 10_000


def _call_facts() -> tuple[str, str]:
    call = current_call()
    return (call.peer, call.request_id) if call is not None else ("", "")


def _required(value: str, field: str) -> None:
    if not value:
        raise InvalidArgument(f"{field} is required", field_violations=[FieldViolation(field, "must not be empty")])


def _grant_fields(grant: TokenGrant) -> dict[str, Any]:
    return {
        "access_token": grant.access_token,
        "access_token_expire_time": timestamp(grant.access_token_expire_time),
        "refresh_token": grant.refresh_token,
        "refresh_token_expire_time": timestamp(grant.refresh_token_expire_time),
    }


class AuthService(auth_pb2_grpc.AuthServiceServicer):
    """Exchanges credentials for tokens; describes the caller."""

    def __init__(self, manager: AuthManager) -> None:
        self._manager = manager
        # The answer for each cached Principal object (immutable, and replaced when its user changes): a caller
        # polling WhoAmI with an API key gets the message built for it the first time.
        self._who: dict[str, tuple[Principal, auth_pb2.WhoAmIResponse]] = {}

    async def Login(self, request: auth_pb2.LoginRequest, context: Any) -> auth_pb2.LoginResponse:
        """Username and password for an access token and a refresh token."""
        _required(request.username, "username")
        _required(request.password, "password")
        peer, request_id = _call_facts()
        grant = await self._manager.login(request.username, request.password, peer=peer, request_id=request_id)
        return auth_pb2.LoginResponse(user=user_to_proto(grant.user), **_grant_fields(grant))

    async def RefreshToken(self, request: auth_pb2.RefreshTokenRequest, context: Any) -> auth_pb2.RefreshTokenResponse:
        """Spend a refresh token for a new pair."""
        _required(request.refresh_token, "refresh_token")
        peer, request_id = _call_facts()
        grant = await self._manager.refresh(request.refresh_token, peer=peer, request_id=request_id)
        return auth_pb2.RefreshTokenResponse(**_grant_fields(grant))

    async def RevokeToken(self, request: auth_pb2.RevokeTokenRequest, context: Any) -> auth_pb2.RevokeTokenResponse:
        """Revoke a refresh token and its family."""
        _required(request.refresh_token, "refresh_token")
        peer, request_id = _call_facts()
        await self._manager.revoke(request.refresh_token, peer=peer, request_id=request_id)
        return auth_pb2.RevokeTokenResponse()

    async def WhoAmI(self, request: auth_pb2.WhoAmIRequest, context: Any) -> auth_pb2.WhoAmIResponse:
        """The calling principal, how it authenticated and its effective permissions."""
        call = current_call()
        if call is None or call.principal is None:  # the chain always authenticates this method
            raise Unauthenticated("no principal")
        principal = call.principal
        known = self._who.get(principal.id)
        if known is not None and known[0] is principal:
            return known[1]
        response = auth_pb2.WhoAmIResponse(
            user=principal_to_proto(principal),
            auth_method=principal.auth_method,
            permissions=principal.permission_strings(),
        )
        if len(self._who) >= _MAX_CACHED:
            self._who.clear()
        self._who[principal.id] = (principal, response)
        return response
