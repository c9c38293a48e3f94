"""API-key administration, the key half of UserService: create (shown once), list and revoke keys."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from baton.auth.api_keys import adopt_api_key, generate_api_key, is_plausible_key
from baton.auth.credential_repository import ApiKeyRecord, insert_api_key
from baton.auth.manager_base import (
    Actor,
    ManagerBase,
    display_name_violations,
    invalid,
    malformed_page_token,
    roles_text,
)
from baton.auth.principal import RoleBinding, binding_violations, normalized_bindings, username_violations
from baton.auth.repository import SERVICE_ACCOUNT, UserRecord
from baton.errors import FieldViolation
from baton.pagination import decode_token, encode_token
from baton.pagination import page_size as effective_page_size
from baton.store import new_id

_KEY_ID_ATTEMPTS = 3


class ApiKeyAdministration(ManagerBase):
    """CreateApiKey, ListApiKeys, RevokeApiKey, and the bootstrap admin's account with its key."""

    async def create_api_key(
        self, user_id: str, display_name: str, expire_time: datetime | None = None, *, actor: Actor | None = None
    ) -> tuple[ApiKeyRecord, str]:
        """A new key for a user: its record and the key itself, which is never shown again. NotFound for an
        unknown user; InvalidArgument on `expire_time` when it is not in the future. Audited."""
        now = self._clock()
        violations = display_name_violations(display_name, "display_name")
        if expire_time is not None and (expire_time.tzinfo is None or expire_time <= now):
            violations.append(FieldViolation("expire_time", "must be a time in the future (or unset for never)"))
        if violations:
            raise invalid(violations)
        for attempt in range(1, _KEY_ID_ATTEMPTS + 1):
            key = generate_api_key()
            try:
                record = await self._keys.create(
                    key, user_id=user_id, display_name=display_name, expire_time=expire_time, now=now
                )
            except IntegrityError:  # a key id collision (62 random bits): try another key
                if attempt == _KEY_ID_ATTEMPTS:
                    raise
                continue
            self._record("api_key.created", "ok", actor, key_id=record.id, user_id=user_id)
            return record, key.key
        raise AssertionError("unreachable")

    async def list_api_keys(
        self, user_id: str, page_size: int = 0, page_token: str = "", show_revoked: bool = False
    ) -> tuple[list[ApiKeyRecord], str]:
        """One page of a user's keys, oldest first; revoked and expired ones only with `show_revoked`.
        NotFound for an unknown user."""
        limit = effective_page_size(page_size)
        bound = {"user_id": user_id, "show_revoked": show_revoked}
        position = decode_token(page_token, bound)
        after = None if position is None else _key_position(position)
        keys = await self._keys.list(
            user_id, limit=limit + 1, after=after, show_revoked=show_revoked, now=self._clock()
        )
        if len(keys) <= limit:
            return keys, ""
        last = keys[limit - 1]
        return keys[:limit], encode_token({"t": last.create_time.isoformat(), "id": last.id}, bound)

    async def revoke_api_key(self, key_id: str, *, actor: Actor | None = None) -> ApiKeyRecord:
        """Revoke a key: idempotent, NotFound if unknown, effective at once on this replica (other replicas:
        within BATON_API_KEY_CACHE_SECONDS). Audited as api_key.revoked."""
        record, newly = await self._keys.revoke(key_id, self._clock())
        if self._cache is not None:
            self._cache.invalidate_key(key_id)
        self._record("api_key.revoked", "ok", actor, key_id=key_id, user_id=record.user_id, already_revoked=not newly)
        return record

    async def create_service_account_with_key(
        self, username: str, display_name: str, role_bindings: Sequence[RoleBinding], key: str | None = None
    ) -> tuple[UserRecord, ApiKeyRecord, str]:
        """A service account and one API key in a single transaction, so neither exists without the other
        (the bootstrap admin). `key` is taken as given when set (32-256 printable characters, any format),
        else a new key is made. AlreadyExists when the username is taken."""
        violations = [*username_violations(username), *binding_violations(role_bindings)]
        if key is not None and not is_plausible_key(key):
            violations.append(FieldViolation("key", "must be 32-256 printable ASCII characters"))
        if violations:
            raise invalid(violations)
        new_key = adopt_api_key(key) if key is not None else generate_api_key()
        user_id, now = new_id(), self._clock()
        created: list[ApiKeyRecord] = []

        def add_key(connection: Connection) -> None:
            created.append(insert_api_key(connection, new_key, user_id, display_name, None, now))

        user = await self._users.create(
            user_id=user_id,
            username=username,
            display_name=display_name,
            kind=SERVICE_ACCOUNT,
            bindings=normalized_bindings(role_bindings),
            password_hash=None,
            now=now,
            extra=add_key,
        )
        details = {"user_id": user.id, "username": username, "key_id": created[0].id}
        self._record("user.created", "ok", None, roles=roles_text(user.role_bindings), **details)
        return user, created[0], new_key.key


def _key_position(position: dict[str, Any]) -> tuple[datetime, str]:
    try:
        when, key_id = datetime.fromisoformat(str(position["t"])), position["id"]
    except (KeyError, ValueError):
        raise malformed_page_token() from None
    if when.tzinfo is None or not isinstance(key_id, str):
        raise malformed_page_token()
    return when, key_id
