"""Credentials as call metadata: an API key, a fixed bearer token, or a login session that refreshes itself.

A session keeps the access and refresh tokens of a Login; the access token is refreshed (RefreshToken, which
rotates the refresh token) `refresh_margin` seconds before it expires, and once when a call comes back
UNAUTHENTICATED. If the refresh token is refused the session logs in again with the password it was given.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import time
from dataclasses import dataclass, field

from baton_betterproto.baton.v1 import LoginResponse, RefreshTokenResponse

Metadata = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class ApiKeyCredentials:
    """An API key (`bk_<id>_<secret>`), sent as `x-api-key`."""

    api_key: str = field(repr=False)

    def metadata(self) -> Metadata:
        """The call metadata for these credentials."""
        return [("x-api-key", self.api_key)]


@dataclass(frozen=True, slots=True)
class TokenCredentials:
    """A bearer token obtained elsewhere, sent as `authorization: Bearer`; never refreshed."""

    token: str = field(repr=False)

    def metadata(self) -> Metadata:
        """The call metadata for these credentials."""
        return [("authorization", f"Bearer {self.token}")]


def token_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT as a UNIX time, read without verifying (the server verifies); None if absent."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, int | float) else None


def _unix(moment: datetime.datetime | None) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


@dataclass(slots=True)
class Session:
    """Username/password credentials and the tokens of the current login (mutable; guarded by the client)."""

    username: str
    password: str = field(repr=False)
    #: Refresh this many seconds before the access token expires.
    refresh_margin: float = 30.0
    access_token: str = field(default="", repr=False)
    refresh_token: str = field(default="", repr=False)
    access_expires_at: float | None = None
    #: How many times the tokens were replaced (logins and refreshes); handy for monitoring and tests.
    renewals: int = 0

    def metadata(self) -> Metadata:
        """The call metadata for the current access token."""
        return [("authorization", f"Bearer {self.access_token}")]

    def due(self, now: float | None = None) -> bool:
        """Whether the access token is missing or expires within the refresh margin."""
        if not self.access_token:
            return True
        if self.access_expires_at is None:
            return False
        return (time.time() if now is None else now) >= self.access_expires_at - self.refresh_margin

    def accept(self, response: LoginResponse | RefreshTokenResponse) -> None:
        """Take the tokens of a Login or RefreshToken response."""
        self.access_token = response.access_token
        self.refresh_token = response.refresh_token or self.refresh_token
        self.access_expires_at = _unix(response.access_token_expire_time) or token_expiry(response.access_token)
        self.renewals += 1

    def reject(self, access_token: str) -> None:
        """The server refused `access_token`: renew on the next call unless it was renewed meanwhile."""
        if self.access_token == access_token:
            self.access_token = ""


Credentials = ApiKeyCredentials | TokenCredentials | Session


def credentials_from(
    *,
    api_key: str | None,
    token: str | None,
    username: str | None,
    password: str | None,
    refresh_margin: float,
) -> Credentials | None:
    """The one kind of credentials given to connect(); ValueError when several or half of one are given."""
    given = [name for name, value in (("api_key", api_key), ("token", token), ("username", username)) if value]
    if len(given) > 1:
        raise ValueError(f"give one of api_key, token or username/password, not {' and '.join(given)}")
    if api_key:
        return ApiKeyCredentials(api_key)
    if token:
        return TokenCredentials(token)
    if username:
        if not password:
            raise ValueError("username needs a password")
        return Session(username, password, refresh_margin=refresh_margin)
    if password:
        raise ValueError("password needs a username")
    return None
