"""SQL for principals: users and service accounts, their role bindings and password hashes.

Each method is one transaction run in one hop (`run_in_transaction`, or a plain connection for reads). The
records returned are plain frozen dataclasses; the etag of a user is its `revision`, which every update bumps.
Changes that could remove the last enabled global admin lock the admin rows first (in id order, so two such
changes cannot deadlock) and refuse with FailedPrecondition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import and_, delete, insert, select, true, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from baton.auth.principal import Role, RoleBinding
from baton.errors import Aborted, AlreadyExists, FailedPrecondition, NotFound
from baton.store import SqlStore
from baton.store.tables import api_keys, password_hashes, principals, refresh_tokens, role_bindings

T = TypeVar("T")

HUMAN = "human"
SERVICE_ACCOUNT = "service_account"


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A principal as the UserService shows it. `revision` is the version access tokens are bound to."""

    id: str
    username: str
    display_name: str
    kind: str
    role_bindings: tuple[RoleBinding, ...]
    disabled: bool
    create_time: datetime
    update_time: datetime
    etag: str
    revision: int

    @property
    def is_admin(self) -> bool:
        """Whether the user holds the admin role globally (enabled or not)."""
        return is_global_admin(self.role_bindings)


def is_global_admin(bindings: Iterable[RoleBinding]) -> bool:
    """Whether the bindings grant the admin role in every namespace."""
    return any(b.role is Role.ADMIN and b.namespace is None for b in bindings)


async def run_read(store: SqlStore, fn: Callable[[Connection], T]) -> T:
    """Run `fn` on one connection without taking a write lock (a deferred transaction, rolled back)."""
    return await store.run_read(fn)


def load_users(
    connection: Connection, condition: ColumnElement[bool], *, limit: int | None = None, order: Sequence[Any] = ()
) -> list[UserRecord]:
    """Principals matching `condition` with their role bindings, in `order`."""
    query = select(principals).where(condition).order_by(*order)
    if limit is not None:
        query = query.limit(limit)
    rows = connection.execute(query).all()
    if not rows:
        return []
    ids = [row.id for row in rows]
    bindings: dict[str, list[RoleBinding]] = {principal_id: [] for principal_id in ids}
    binding_rows = connection.execute(
        select(role_bindings.c.principal_id, role_bindings.c.role, role_bindings.c.namespace)
        .where(role_bindings.c.principal_id.in_(ids))
        .order_by(role_bindings.c.id)
    )
    for principal_id, role, namespace in binding_rows:
        bindings[principal_id].append(RoleBinding(Role(role.lower()), namespace))
    return [
        UserRecord(
            id=row.id,
            username=row.username,
            display_name=row.display_name,
            kind=row.kind.lower(),
            role_bindings=tuple(bindings[row.id]),
            disabled=bool(row.disabled),
            create_time=row.create_time,
            update_time=row.update_time,
            etag=str(row.revision),
            revision=row.revision,
        )
        for row in rows
    ]


def load_user(connection: Connection, user_id: str) -> UserRecord | None:
    """One principal by id, or None."""
    found = load_users(connection, principals.c.id == user_id)
    return found[0] if found else None


def _insert_bindings(connection: Connection, user_id: str, bindings: Sequence[RoleBinding], now: datetime) -> None:
    if bindings:
        connection.execute(
            insert(role_bindings),
            [
                {"principal_id": user_id, "role": b.role.value.upper(), "namespace": b.namespace, "create_time": now}
                for b in bindings
            ],
        )


def enabled_admins(connection: Connection, *, lock: bool = False) -> set[str]:
    """Ids of enabled global admins; `lock` row-locks them (FOR UPDATE on PostgreSQL; on SQLite the
    transaction holds the database's write lock already)."""
    query = (
        select(principals.c.id)
        .join(role_bindings, role_bindings.c.principal_id == principals.c.id)
        .where(principals.c.disabled.is_(False), role_bindings.c.role == "ADMIN", role_bindings.c.namespace.is_(None))
        .order_by(principals.c.id)
    )
    if lock:
        query = query.with_for_update(of=principals)
    return {row.id for row in connection.execute(query)}


def _check_etag(user: UserRecord, etag: str) -> None:
    if etag and etag != user.etag:
        raise Aborted(
            f"user {user.id} was changed since etag {etag!r} was read (now {user.etag!r}); read it again",
            reason="ETAG_MISMATCH",
        )


def _keep_an_admin(admins: set[str], user: UserRecord, stays_admin: bool, what: str) -> None:
    if user.id in admins and not stays_admin and len(admins) == 1:
        raise FailedPrecondition(
            f"cannot {what} {user.username!r}: it is the last enabled admin; make another admin first",
            reason="LAST_ADMIN",
        )


class UserRepository:
    """Principals, role bindings and password hashes over a SqlStore."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def create(
        self,
        *,
        user_id: str,
        username: str,
        display_name: str,
        kind: str,
        bindings: Sequence[RoleBinding],
        password_hash: str | None,
        now: datetime,
        extra: Callable[[Connection], None] | None = None,
    ) -> UserRecord:
        """Insert a principal with its bindings (and `extra` statements, in the same transaction);
        AlreadyExists when the username is taken."""

        def create(connection: Connection) -> UserRecord:
            taken = connection.execute(select(principals.c.id).where(principals.c.username == username)).first()
            if taken is not None:
                raise AlreadyExists(f"a user named {username!r} exists already", reason="USERNAME_TAKEN")
            connection.execute(
                insert(principals).values(
                    id=user_id,
                    username=username,
                    display_name=display_name,
                    kind=kind.upper(),
                    disabled=False,
                    revision=1,
                    create_time=now,
                    update_time=now,
                )
            )
            _insert_bindings(connection, user_id, bindings, now)
            if password_hash is not None:
                connection.execute(
                    insert(password_hashes).values(principal_id=user_id, password_hash=password_hash, update_time=now)
                )
            if extra is not None:
                extra(connection)
            user = load_user(connection, user_id)
            assert user is not None
            return user

        try:
            return await self._store.run_in_transaction(create)
        except IntegrityError as error:  # a concurrent create of the same username, or a key in use
            if "username" in str(error.orig):
                raise AlreadyExists(f"a user named {username!r} exists already", reason="USERNAME_TAKEN") from None
            raise AlreadyExists("that API key is in use already", reason="API_KEY_TAKEN") from None

    async def get(self, user_id: str) -> UserRecord | None:
        """A principal by id, or None."""
        return await run_read(self._store, lambda connection: load_user(connection, user_id))

    async def get_for_login(self, username: str) -> tuple[UserRecord, str | None] | None:
        """A principal by username with its password hash (None when it has none), or None."""

        def fetch(connection: Connection) -> tuple[UserRecord, str | None] | None:
            found = load_users(connection, principals.c.username == username)
            if not found:
                return None
            stored = connection.execute(
                select(password_hashes.c.password_hash).where(password_hashes.c.principal_id == found[0].id)
            ).scalar()
            return found[0], stored

        return await run_read(self._store, fetch)

    async def set_password_hash(self, user_id: str, password_hash: str, now: datetime) -> None:
        """Replace a hash with one of the current parameters (rehash on login; the revision stays)."""
        statement = (
            update(password_hashes)
            .where(password_hashes.c.principal_id == user_id)
            .values(password_hash=password_hash, update_time=now)
        )
        await self._store.run_in_transaction(lambda connection: connection.execute(statement))

    async def list(self, *, limit: int, after_username: str | None, show_disabled: bool) -> list[UserRecord]:
        """Up to `limit` principals ordered by username, after `after_username`."""
        conditions = [principals.c.username > after_username] if after_username is not None else []
        if not show_disabled:
            conditions.append(principals.c.disabled.is_(False))
        condition = and_(true(), *conditions)
        return await run_read(
            self._store,
            lambda connection: load_users(connection, condition, limit=limit, order=[principals.c.username]),
        )

    async def count_enabled_admins(self) -> int:
        """Enabled principals holding the admin role globally."""
        return await run_read(self._store, lambda connection: len(enabled_admins(connection)))

    async def update(
        self,
        user_id: str,
        *,
        etag: str,
        now: datetime,
        display_name: str | None = None,
        bindings: Sequence[RoleBinding] | None = None,
        disabled: bool | None = None,
        password_hash: str | None = None,
    ) -> UserRecord:
        """Apply the given changes and bump the revision; NotFound, Aborted (etag) or FailedPrecondition (last
        admin). Disabling or a new password also revokes the principal's refresh tokens."""

        def change(connection: Connection) -> UserRecord:
            admins = enabled_admins(connection, lock=True) if bindings is not None or disabled else set()
            user = load_user(connection, user_id)
            if user is None:
                raise NotFound(f"user {user_id} does not exist", reason="USER_NOT_FOUND")
            _check_etag(user, etag)
            new_bindings = user.role_bindings if bindings is None else tuple(bindings)
            new_disabled = user.disabled if disabled is None else disabled
            _keep_an_admin(admins, user, is_global_admin(new_bindings) and not new_disabled, "demote or disable")
            values: dict[str, Any] = {"revision": user.revision + 1, "update_time": now}
            if display_name is not None:
                values["display_name"] = display_name
            if disabled is not None:
                values["disabled"] = disabled
            changed = connection.execute(
                update(principals)
                .where(principals.c.id == user_id, principals.c.revision == user.revision)
                .values(**values)
            )
            if changed.rowcount != 1:
                raise Aborted(f"user {user_id} was changed concurrently; read it again", reason="ETAG_MISMATCH")
            if bindings is not None:
                connection.execute(delete(role_bindings).where(role_bindings.c.principal_id == user_id))
                _insert_bindings(connection, user_id, new_bindings, now)
            if password_hash is not None:
                connection.execute(delete(password_hashes).where(password_hashes.c.principal_id == user_id))
                connection.execute(
                    insert(password_hashes).values(principal_id=user_id, password_hash=password_hash, update_time=now)
                )
            if password_hash is not None or (new_disabled and not user.disabled):
                connection.execute(
                    update(refresh_tokens)
                    .where(refresh_tokens.c.principal_id == user_id, refresh_tokens.c.revoke_time.is_(None))
                    .values(revoke_time=now)
                )
            updated = load_user(connection, user_id)
            assert updated is not None
            return updated

        return await self._store.run_in_transaction(change)

    async def delete(self, user_id: str, *, etag: str) -> UserRecord:
        """Delete a principal with its bindings, password, API keys and refresh tokens; returns what it was."""

        def remove(connection: Connection) -> UserRecord:
            admins = enabled_admins(connection, lock=True)
            user = load_user(connection, user_id)
            if user is None:
                raise NotFound(f"user {user_id} does not exist", reason="USER_NOT_FOUND")
            _check_etag(user, etag)
            _keep_an_admin(admins, user, False, "delete")
            # Children first, so the outcome does not depend on the backend enforcing ON DELETE CASCADE.
            for table in (api_keys, refresh_tokens):
                connection.execute(delete(table).where(table.c.principal_id == user_id))
            connection.execute(delete(role_bindings).where(role_bindings.c.principal_id == user_id))
            connection.execute(delete(password_hashes).where(password_hashes.c.principal_id == user_id))
            removed = connection.execute(
                delete(principals).where(principals.c.id == user_id, principals.c.revision == user.revision)
            )
            if removed.rowcount != 1:
                raise Aborted(f"user {user_id} was changed concurrently; read it again", reason="ETAG_MISMATCH")
            return user

        return await self._store.run_in_transaction(remove)
