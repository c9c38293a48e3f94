"""Username/password clients: login at connect, the access token refreshed before it expires (with the refresh
token rotated), renewed once when the server answers UNAUTHENTICATED, and a new login when the refresh token
is refused.

Access tokens live at least 60 s (BATON_ACCESS_TOKEN_TTL_SECONDS), so the tests make the client's refresh margin
nearly as long as the token's lifetime instead of waiting for it to run out.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from baton.client import AsyncClient, Client, Session, UnauthenticatedError
from baton.client._auth import token_expiry
from baton_betterproto.baton.v1 import Role
from tests.client.conftest import PASSWORD, user
from tests.support.server import ADMIN_KEY, RunningServer

TTL = 60


@pytest.fixture
def server_env() -> dict[str, str]:
    return {"BATON_ACCESS_TOKEN_TTL_SECONDS": str(TTL)}


async def make_carol(target: str) -> None:
    async with await AsyncClient.connect(target, api_key=ADMIN_KEY) as admin:
        await admin.users.create(user("carol", Role.VIEWER, human=True), password=PASSWORD)


def _refresh_before_expiry(target: str) -> None:
    margin = TTL - 2.5  # due 2.5 s after each login or refresh (exp is whole seconds)
    with Client.connect(target, username="carol", password=PASSWORD, token_refresh_margin=margin) as client:
        session = client.credentials
        assert isinstance(session, Session)
        assert session.renewals == 1
        expires = token_expiry(session.access_token)
        assert expires is not None
        assert session.access_expires_at is not None
        assert abs(expires - session.access_expires_at) < 2
        assert expires - time.time() > TTL - 5
        me = client.auth.who_am_i()
        assert (me.user.username, me.auth_method, session.renewals) == ("carol", "jwt", 1)

        first_access, first_refresh = session.access_token, session.refresh_token
        time.sleep(2.7)
        assert client.auth.who_am_i().user.username == "carol"
        assert session.renewals == 2
        assert session.access_token != first_access
        assert session.refresh_token != first_refresh

        # Presenting the spent refresh token revokes the family: the client's next refresh is refused, so it
        # logs in again with the password.
        with pytest.raises(UnauthenticatedError):
            client.auth.refresh_token(first_refresh)
        time.sleep(2.7)
        assert client.auth.who_am_i().user.username == "carol"
        assert session.renewals == 3


async def test_access_token_refreshed_before_it_expires(server: RunningServer) -> None:
    await make_carol(server.target)
    await asyncio.to_thread(_refresh_before_expiry, server.target)


async def test_renewed_once_on_unauthenticated(server: RunningServer) -> None:
    await make_carol(server.target)
    async with await AsyncClient.connect(server.target, username="carol", password=PASSWORD) as client:
        session = client.credentials
        assert isinstance(session, Session)
        session.access_token = "not-a-token"  # as if the server stopped accepting it (rotated signing key)
        assert (await client.auth.who_am_i()).user.username == "carol"
        assert session.renewals == 2
        assert session.access_token != "not-a-token"
        assert client.last_call is not None
        assert client.last_call.attempts == 1

    def sync() -> None:
        with Client.connect(server.target, username="carol", password=PASSWORD) as sync_client:
            credentials = sync_client.credentials
            assert isinstance(credentials, Session)
            credentials.access_token = "not-a-token"
            assert sync_client.auth.who_am_i().auth_method == "jwt"
            assert credentials.renewals == 2

    await asyncio.to_thread(sync)


async def test_bad_password_fails_at_connect(server: RunningServer) -> None:
    await make_carol(server.target)
    with pytest.raises(UnauthenticatedError):
        await AsyncClient.connect(server.target, username="carol", password="wrong password!")
    with pytest.raises(UnauthenticatedError):
        await asyncio.to_thread(Client.connect, server.target, username="carol", password="wrong password!")
    with pytest.raises(ValueError, match="not api_key and username"):
        Client.connect(server.target, api_key=ADMIN_KEY, username="carol", password=PASSWORD)


async def test_bearer_token(server: RunningServer) -> None:
    await make_carol(server.target)
    async with await AsyncClient.connect(server.target) as anonymous:
        login = await anonymous.auth.login("carol", PASSWORD)
        with pytest.raises(UnauthenticatedError):
            await anonymous.auth.who_am_i()
    async with await AsyncClient.connect(server.target, token=login.access_token) as client:
        assert (await client.auth.who_am_i()).auth_method == "jwt"
