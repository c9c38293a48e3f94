"""Sessions, the AuthService half of AuthManager: password login, refresh-token rotation and revocation.

A login starts a refresh-token family; each refresh spends its token and hands out a child. Presenting a
spent token (a replay, or two clients racing with the same token) revokes the whole family. Access tokens
already issued stay valid until they expire (at most BATON_ACCESS_TOKEN_TTL_SECONDS).
"""

from __future__ import annotations

import asyncio

from baton.auth.manager_base import Actor, ManagerBase, TokenGrant
from baton.auth.passwords import MAX_PASSWORD_LENGTH
from baton.auth.principal import username_violations
from baton.auth.repository import HUMAN
from baton.auth.tokens import new_refresh_token, token_digest
from baton.errors import Unauthenticated

_REFUSALS = {
    "unknown": ("the refresh token is not valid", "TOKEN_INVALID"),
    "revoked": ("the refresh token was revoked; log in again", "TOKEN_INVALID"),
    "expired": ("the refresh token has expired; log in again", "TOKEN_EXPIRED"),
    "disabled": ("the user is disabled", "PRINCIPAL_DISABLED"),
    "reused": (
        "the refresh token was used before, so every token of this login is revoked; log in again",
        "TOKEN_REUSED",
    ),
}


class Sessions(ManagerBase):
    """Login, RefreshToken and RevokeToken."""

    async def login(self, username: str, password: str, *, peer: str = "", request_id: str = "") -> TokenGrant:
        """Tokens for a person's username and password. Unknown user, wrong password and service account all
        get the same Unauthenticated LOGIN_FAILED after the same work (one argon2 verify); a disabled user
        (with the right password) gets PRINCIPAL_DISABLED. Audited as login.succeeded / login.failed."""
        found = None if username_violations(username) else await self._users.get_for_login(username)
        user, stored = found if found is not None else (None, None)
        if (user is not None and user.kind != HUMAN) or len(password) > MAX_PASSWORD_LENGTH:
            stored = None
        verified = await asyncio.to_thread(self._passwords.verify, stored, password)
        actor = Actor(user.id if user else None, peer, request_id)
        if user is None or stored is None or not verified:
            why = "unknown_user" if user is None else "no_password" if stored is None else "bad_password"
            self._record("login.failed", "failed", actor, username=username[:64], reason=why)
            raise Unauthenticated("wrong username or password", reason="LOGIN_FAILED")
        if user.disabled:
            self._record("login.failed", "denied", actor, username=username, reason="disabled")
            raise Unauthenticated("the user is disabled", reason="PRINCIPAL_DISABLED")
        now = self._clock()
        if self._passwords.needs_rehash(stored):
            rehashed = await asyncio.to_thread(self._passwords.hash, password)
            await self._users.set_password_hash(user.id, rehashed, now)
        refresh_token, refresh_expire_time = new_refresh_token(), now + self._refresh_ttl
        family_id = await self._refresh_tokens.issue(
            user_id=user.id, token_hash=token_digest(refresh_token), expire_time=refresh_expire_time, now=now
        )
        access = self._tokens.issue(user.id, user.revision)
        self._record("login.succeeded", "ok", actor, username=username, family_id=family_id)
        return TokenGrant(access.token, access.expire_time, refresh_token, refresh_expire_time, user)

    async def refresh(self, refresh_token: str, *, peer: str = "", request_id: str = "") -> TokenGrant:
        """Spend a refresh token for a new access token and a new refresh token (audited as token.refreshed).
        A token spent before revokes its whole family (audited as refresh_token.reuse_detected); that and
        every other bad token get Unauthenticated."""
        new_token = new_refresh_token()
        rotation = await self._refresh_tokens.rotate(
            token_hash=token_digest(refresh_token),
            new_token_hash=token_digest(new_token),
            now=self._clock(),
            ttl=self._refresh_ttl,
        )
        user = rotation.user
        actor = Actor(user.id if user else None, peer, request_id)
        if rotation.outcome == "reused":
            self._record("refresh_token.reuse_detected", "denied", actor, family_id=rotation.family_id or "")
        if rotation.outcome != "rotated" or user is None or rotation.expire_time is None:
            message, reason = _REFUSALS.get(rotation.outcome, _REFUSALS["unknown"])
            raise Unauthenticated(message, reason=reason)
        access = self._tokens.issue(user.id, user.revision)
        self._record("token.refreshed", "ok", actor, family_id=rotation.family_id or "")
        return TokenGrant(access.token, access.expire_time, new_token, rotation.expire_time, user)

    async def revoke(self, refresh_token: str, *, peer: str = "", request_id: str = "") -> None:
        """Revoke a refresh token with its family; unknown or revoked tokens succeed too (idempotent).
        Audited as token.revoked."""
        revoked = await self._refresh_tokens.revoke_family(token_digest(refresh_token), self._clock())
        principal_id, family_id = revoked if revoked is not None else (None, "")
        actor = Actor(principal_id, peer, request_id)
        self._record("token.revoked", "ok", actor, family_id=family_id, known=revoked is not None)
