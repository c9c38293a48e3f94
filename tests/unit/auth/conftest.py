"""Fixtures of the auth tests: a migrated SQLite file, a cheap password hasher, the auth components wired up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import event

from baton.auth import (
    AuditLog,
    AuthManager,
    CachingAuthenticator,
    Passwords,
    Role,
    RoleBinding,
    TokenCodec,
    UserRecord,
)
from baton.config import StorageConfig
from baton.store import SqlStore, open_store

SECRET = b"test-secret-test-secret-test-secret!"
ADMIN_PASSWORD = "correct horse battery"
USER_PASSWORD = "another long password"


class Clock:
    """A settable UTC clock for the manager."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


StatementLog = list[tuple[str, Any]]


@pytest.fixture
def count_statements(store: SqlStore) -> Callable[[], AbstractContextManager[StatementLog]]:
    """`with count_statements() as seen:` collects every statement (and its parameters) the store sends."""

    @contextmanager
    def counting() -> Iterator[StatementLog]:
        seen: StatementLog = []

        def listener(_conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
            seen.append((statement, parameters))

        for engine in store.sync_engines:
            event.listen(engine, "before_cursor_execute", listener)
        try:
            yield seen
        finally:
            for engine in store.sync_engines:
                event.remove(engine, "before_cursor_execute", listener)

    return counting


@pytest.fixture(scope="session")
def passwords() -> Passwords:
    """argon2id with the smallest parameters, so tests stay fast."""
    return Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    """A migrated SQLite database in a file."""
    config = StorageConfig(database_url=f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}")
    store = await open_store(config, auto_migrate=True)
    yield store
    await store.close()


@pytest.fixture
def codec() -> TokenCodec:
    """HS256 tokens with a fixed secret."""
    return TokenCodec(
        algorithm="HS256",
        signing_key=SECRET,
        verification_key=SECRET,
        issuer="baton",
        audience="baton",
        ttl_seconds=900,
    )


@pytest.fixture
async def audit(store: SqlStore) -> AsyncIterator[AuditLog]:
    """A started audit log that writes quickly."""
    log = AuditLog(store, flush_interval=0.01)
    await log.start()
    yield log
    await log.close()


@pytest.fixture
async def authenticator(store: SqlStore, codec: TokenCodec) -> AsyncIterator[CachingAuthenticator]:
    """The authenticator with a 30 s cache (its usage writer is not started; tests flush by hand)."""
    authenticator = CachingAuthenticator(store, codec, cache_seconds=30.0)
    yield authenticator
    await authenticator.close()


@pytest.fixture
def clock() -> Clock:
    """The manager's clock."""
    return Clock()


@pytest.fixture
def manager(
    store: SqlStore,
    codec: TokenCodec,
    audit: AuditLog,
    passwords: Passwords,
    authenticator: CachingAuthenticator,
    clock: Clock,
) -> AuthManager:
    """The manager, invalidating the authenticator's caches."""
    return AuthManager(store, tokens=codec, audit=audit, passwords=passwords, cache=authenticator, clock=clock)


@pytest.fixture
async def admin(manager: AuthManager) -> UserRecord:
    """An enabled global admin (a person)."""
    return await manager.create_user("root", "Root", "human", [RoleBinding(Role.ADMIN)], ADMIN_PASSWORD)


@pytest.fixture
async def alice(manager: AuthManager) -> UserRecord:
    """A developer in namespace billing (a person)."""
    return await manager.create_user("alice", "Alice", "human", [RoleBinding(Role.DEVELOPER, "billing")], USER_PASSWORD)


@pytest.fixture
async def robot(manager: AuthManager) -> UserRecord:
    """A worker service account."""
    return await manager.create_user("robot", "Robot", "service_account", [RoleBinding(Role.WORKER)])
