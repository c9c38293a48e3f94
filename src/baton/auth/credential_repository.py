"""SQL for credentials: API keys and refresh tokens, both stored only as SHA-256 digests.

Refresh-token rotation is one transaction whose outcome is returned rather than raised, so that the revocation
of a family on reuse is committed before the caller refuses the request. Double use, even concurrent, is caught
by a conditional UPDATE (`… WHERE used_time IS NULL`) whose row count says who won.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import and_, bindparam, insert, or_, select, update
from sqlalchemy.engine import Connection, Row

from baton.auth.api_keys import NewApiKey, digests_match
from baton.auth.repository import UserRecord, load_user, run_read
from baton.errors import NotFound
from baton.store import SqlStore, new_id
from baton.store.tables import api_keys, principals, refresh_tokens


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key as the UserService shows it; never the key itself."""

    id: str
    user_id: str
    display_name: str
    prefix: str
    create_time: datetime
    expire_time: datetime | None
    last_used_time: datetime | None
    revoke_time: datetime | None


@dataclass(frozen=True, slots=True)
class KeyMatch:
    """The stored key a presented key matched, and its owner."""

    key: ApiKeyRecord
    user: UserRecord


RotationOutcome = Literal["rotated", "unknown", "expired", "revoked", "reused", "disabled"]


@dataclass(frozen=True, slots=True)
class Rotation:
    """What happened to a refresh token presented for rotation."""

    outcome: RotationOutcome
    user: UserRecord | None = None
    family_id: str | None = None
    expire_time: datetime | None = None


def _key_record(row: Row[Any]) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row.id,
        user_id=row.principal_id,
        display_name=row.display_name,
        prefix=row.prefix,
        create_time=row.create_time,
        expire_time=row.expire_time,
        last_used_time=row.last_used_time,
        revoke_time=row.revoke_time,
    )


def insert_api_key(
    connection: Connection, key: NewApiKey, user_id: str, display_name: str, expire_time: datetime | None, now: datetime
) -> ApiKeyRecord:
    """Insert a key row (digest only) in the caller's transaction."""
    values = {
        "id": key.key_id,
        "principal_id": user_id,
        "display_name": display_name,
        "prefix": key.prefix,
        "key_hash": key.key_hash,
        "create_time": now,
        "expire_time": expire_time,
    }
    connection.execute(insert(api_keys).values(**values))
    return ApiKeyRecord(
        id=key.key_id,
        user_id=user_id,
        display_name=display_name,
        prefix=key.prefix,
        create_time=now,
        expire_time=expire_time,
        last_used_time=None,
        revoke_time=None,
    )


def _user_not_found(user_id: str) -> NotFound:
    return NotFound(f"user {user_id} does not exist", reason="USER_NOT_FOUND")


class ApiKeyRepository:
    """API key rows over a SqlStore."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def create(
        self, key: NewApiKey, *, user_id: str, display_name: str, expire_time: datetime | None, now: datetime
    ) -> ApiKeyRecord:
        """Store a new key for an existing user (NotFound otherwise)."""

        def create(connection: Connection) -> ApiKeyRecord:
            if connection.execute(select(principals.c.id).where(principals.c.id == user_id)).first() is None:
                raise _user_not_found(user_id)
            return insert_api_key(connection, key, user_id, display_name, expire_time, now)

        return await self._store.run_in_transaction(create)

    async def find(self, key_id: str | None, digest: str) -> KeyMatch | None:
        """The key whose digest is `digest`: by `key_id` first (compared in constant time), else by digest."""

        def find(connection: Connection) -> KeyMatch | None:
            row = None
            if key_id is not None:
                row = connection.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
                if row is not None and not digests_match(row.key_hash, digest):
                    row = None
            if row is None:
                row = connection.execute(select(api_keys).where(api_keys.c.key_hash == digest)).first()
            if row is None:
                return None
            user = load_user(connection, row.principal_id)
            return None if user is None else KeyMatch(key=_key_record(row), user=user)

        return await run_read(self._store, find)

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        """A key by id, or None."""

        def fetch(connection: Connection) -> ApiKeyRecord | None:
            row = connection.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
            return None if row is None else _key_record(row)

        return await run_read(self._store, fetch)

    async def list(
        self, user_id: str, *, limit: int, after: tuple[datetime, str] | None, show_revoked: bool, now: datetime
    ) -> list[ApiKeyRecord]:
        """Up to `limit` keys of a user, oldest first, after the (create_time, id) position `after`;
        NotFound when the user does not exist."""
        conditions = [api_keys.c.principal_id == user_id]
        if after is not None:
            after_time, after_id = after
            conditions.append(
                or_(
                    api_keys.c.create_time > after_time,
                    and_(api_keys.c.create_time == after_time, api_keys.c.id > after_id),
                )
            )
        if not show_revoked:
            conditions.append(api_keys.c.revoke_time.is_(None))
            conditions.append(or_(api_keys.c.expire_time.is_(None), api_keys.c.expire_time > now))
        query = select(api_keys).where(*conditions).order_by(api_keys.c.create_time, api_keys.c.id).limit(limit)

        def fetch(connection: Connection) -> list[ApiKeyRecord]:
            if connection.execute(select(principals.c.id).where(principals.c.id == user_id)).first() is None:
                raise _user_not_found(user_id)
            return [_key_record(row) for row in connection.execute(query)]

        return await run_read(self._store, fetch)

    async def revoke(self, key_id: str, now: datetime) -> tuple[ApiKeyRecord, bool]:
        """Revoke a key (NotFound if unknown); the flag says whether this call revoked it (False: it was)."""

        def revoke(connection: Connection) -> tuple[ApiKeyRecord, bool]:
            changed = connection.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoke_time.is_(None))
                .values(revoke_time=now)
            )
            row = connection.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
            if row is None:
                raise NotFound(f"API key {key_id} does not exist", reason="API_KEY_NOT_FOUND")
            return _key_record(row), changed.rowcount == 1

        return await self._store.run_in_transaction(revoke)

    async def record_use(self, uses: Mapping[str, datetime]) -> None:
        """Set last_used_time of several keys: one UPDATE per key, all in one transaction."""
        if not uses:
            return
        statement = (
            update(api_keys)
            .where(
                api_keys.c.id == bindparam("key_id"),
                or_(api_keys.c.last_used_time.is_(None), api_keys.c.last_used_time < bindparam("used")),
            )
            .values(last_used_time=bindparam("used"))
        )
        parameters = [{"key_id": key_id, "used": when} for key_id, when in sorted(uses.items())]
        await self._store.run_in_transaction(lambda connection: connection.execute(statement, parameters))


class RefreshTokenRepository:
    """Refresh token rows over a SqlStore."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def issue(self, *, user_id: str, token_hash: str, expire_time: datetime, now: datetime) -> str:
        """Store the first token of a new family (a login); returns the family id."""
        token_id = new_id()
        statement = insert(refresh_tokens).values(
            id=token_id,
            principal_id=user_id,
            family_id=token_id,
            token_hash=token_hash,
            parent_id=None,
            create_time=now,
            expire_time=expire_time,
        )
        await self._store.run_in_transaction(lambda connection: connection.execute(statement))
        return token_id

    async def rotate(self, *, token_hash: str, new_token_hash: str, now: datetime, ttl: timedelta) -> Rotation:
        """Spend a token and store its child in one transaction. A token spent before (or by a concurrent
        call) revokes its whole family and reports "reused"; nothing is changed for the other refusals."""

        def rotate(connection: Connection) -> Rotation:
            row = connection.execute(select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash)).first()
            if row is None:
                return Rotation("unknown")
            user = load_user(connection, row.principal_id)
            if row.revoke_time is not None:
                return Rotation("revoked", user, row.family_id)
            if row.used_time is not None:
                _revoke_family(connection, row.family_id, now)
                return Rotation("reused", user, row.family_id)
            if row.expire_time <= now:
                return Rotation("expired", user, row.family_id)
            if user is None or user.disabled:
                return Rotation("disabled", user, row.family_id)
            spent = connection.execute(
                update(refresh_tokens)
                .where(refresh_tokens.c.id == row.id, refresh_tokens.c.used_time.is_(None))
                .values(used_time=now)
            )
            if spent.rowcount != 1:  # a concurrent call spent it between our read and this update
                _revoke_family(connection, row.family_id, now)
                return Rotation("reused", user, row.family_id)
            expire_time = now + ttl
            connection.execute(
                insert(refresh_tokens).values(
                    id=new_id(),
                    principal_id=row.principal_id,
                    family_id=row.family_id,
                    token_hash=new_token_hash,
                    parent_id=row.id,
                    create_time=now,
                    expire_time=expire_time,
                )
            )
            return Rotation("rotated", user, row.family_id, expire_time)

        return await self._store.run_in_transaction(rotate)

    async def revoke_family(self, token_hash: str, now: datetime) -> tuple[str, str] | None:
        """Revoke the token's family; (principal id, family id), or None for an unknown token."""

        def revoke(connection: Connection) -> tuple[str, str] | None:
            row = connection.execute(
                select(refresh_tokens.c.principal_id, refresh_tokens.c.family_id).where(
                    refresh_tokens.c.token_hash == token_hash
                )
            ).first()
            if row is None:
                return None
            _revoke_family(connection, row.family_id, now)
            return row.principal_id, row.family_id

        return await self._store.run_in_transaction(revoke)


def _revoke_family(connection: Connection, family_id: str, now: datetime) -> None:
    connection.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoke_time.is_(None))
        .values(revoke_time=now)
    )
