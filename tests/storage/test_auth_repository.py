"""Auth storage on every backend: digests only, rotation under concurrency, batched writes, cascades, locks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import event, func, select, update

from baton.auth import (
    AuditLog,
    AuditRecord,
    AuthManager,
    CachingAuthenticator,
    Passwords,
    Role,
    RoleBinding,
    TokenCodec,
    UserChanges,
    ensure_bootstrap_admin,
    key_digest,
)
from baton.auth.repository import enabled_admins
from baton.errors import AlreadyExists, FailedPrecondition, Unauthenticated
from baton.store import SqlStore, tables
from baton.store.engine import BEGIN_IMMEDIATE

PASSWORD = "a long enough password"
PASSWORDS = Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
CODEC = TokenCodec(
    algorithm="HS256",
    signing_key=b"s" * 32,
    verification_key=b"s" * 32,
    issuer="baton",
    audience="baton",
    ttl_seconds=900,
)


@dataclass
class Auth:
    """The auth components over the store under test."""

    store: SqlStore
    manager: AuthManager
    authenticator: CachingAuthenticator
    audit: AuditLog

    def another_manager(self) -> AuthManager:
        """A manager as another replica would have it (own audit sink, no shared cache)."""
        return AuthManager(self.store, tokens=CODEC, audit=self.audit, passwords=PASSWORDS)


@pytest.fixture
async def auth(store: SqlStore) -> AsyncIterator[Auth]:
    audit = AuditLog(store, flush_interval=0.01)
    await audit.start()
    authenticator = CachingAuthenticator(store, CODEC)
    manager = AuthManager(store, tokens=CODEC, audit=audit, passwords=PASSWORDS, cache=authenticator)
    yield Auth(store, manager, authenticator, audit)
    await authenticator.close()
    await audit.close()


@contextmanager
def statements(store: SqlStore) -> Iterator[list[tuple[str, Any]]]:
    """Every statement (with its parameters) the store's engine sends inside the block."""
    seen: list[tuple[str, Any]] = []

    def listener(_conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    for engine in store.sync_engines:
        event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        for engine in store.sync_engines:
            event.remove(engine, "before_cursor_execute", listener)


async def all_rows(store: SqlStore) -> str:
    """Every row of every table, as one string to search."""

    def dump(connection: Any) -> str:
        return repr([connection.execute(select(table)).all() for table in tables.metadata.sorted_tables])

    return await store.run_in_transaction(dump)


async def test_only_digests_of_credentials_are_stored(auth: Auth) -> None:
    user = await auth.manager.create_user("alice", "Alice", "human", [RoleBinding(Role.VIEWER)], PASSWORD)
    record, key = await auth.manager.create_api_key(user.id, "laptop")
    grant = await auth.manager.login("alice", PASSWORD)
    await auth.authenticator.authenticate({"x-api-key": key})
    await auth.authenticator.flush_usage()
    await auth.audit.flush()
    dumped = await all_rows(auth.store)
    secret = key.split("_", 2)[2]  # bk_<key_id>_<secret>; the secret itself may contain "_"
    for raw in (key, secret, grant.refresh_token, PASSWORD):
        assert raw not in dumped
    assert key_digest(key) in dumped
    assert record.prefix in dumped


async def test_concurrent_double_refresh_exactly_one_succeeds(auth: Auth) -> None:
    await auth.manager.create_user("alice", "Alice", "human", [RoleBinding(Role.VIEWER)], PASSWORD)
    grant = await auth.manager.login("alice", PASSWORD)
    replicas = [auth.manager, auth.another_manager(), auth.another_manager()]
    outcomes = await asyncio.gather(*(m.refresh(grant.refresh_token) for m in replicas), return_exceptions=True)
    winners = [o for o in outcomes if not isinstance(o, BaseException)]
    losers = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(o, Unauthenticated) for o in losers)
    # The first loser detects the reuse and revokes the family; a later one may find it revoked already.
    assert any(isinstance(o, Unauthenticated) and o.reason == "TOKEN_REUSED" for o in losers)

    def count_children(connection: Any) -> int:
        query = (
            select(func.count()).select_from(tables.refresh_tokens).where(tables.refresh_tokens.c.parent_id.isnot(None))
        )
        return int(connection.execute(query).scalar_one())

    assert await auth.store.run_in_transaction(count_children) == 1


async def test_reuse_revokes_the_family_including_the_child(auth: Auth) -> None:
    await auth.manager.create_user("alice", "Alice", "human", [RoleBinding(Role.VIEWER)], PASSWORD)
    grant = await auth.manager.login("alice", PASSWORD)
    child = await auth.manager.refresh(grant.refresh_token)
    with pytest.raises(Unauthenticated) as caught:
        await auth.manager.refresh(grant.refresh_token)
    assert caught.value.reason == "TOKEN_REUSED"
    with pytest.raises(Unauthenticated):
        await auth.manager.refresh(child.refresh_token)
    await auth.audit.flush()
    reuse, _ = await auth.audit.list_events(10, "", 'action = "refresh_token.reuse_detected"')
    assert len(reuse) == 1


async def test_last_used_is_one_update_per_key_per_flush(auth: Auth) -> None:
    robot = await auth.manager.create_user("robot", "Robot", "service_account", [RoleBinding(Role.WORKER)])
    keys = [(await auth.manager.create_api_key(robot.id, f"k{i}"))[1] for i in range(3)]
    with statements(auth.store) as seen:
        for _ in range(20):
            for key in keys:
                await auth.authenticator.authenticate({"x-api-key": key})
        await auth.authenticator.flush_usage()
    updates = [params for sql, params in seen if sql.lstrip().upper().startswith("UPDATE API_KEYS")]
    assert sum(len(p) if isinstance(p, list) else 1 for p in updates) == 3
    listed, _ = await auth.manager.list_api_keys(robot.id)
    assert all(k.last_used_time is not None for k in listed)


async def test_cached_authentication_touches_no_database(auth: Auth) -> None:
    robot = await auth.manager.create_user("robot", "Robot", "service_account", [RoleBinding(Role.WORKER)])
    _, key = await auth.manager.create_api_key(robot.id, "ci")
    await auth.authenticator.authenticate({"x-api-key": key})
    with statements(auth.store) as seen:
        for _ in range(50):
            assert await auth.authenticator.authenticate({"x-api-key": key}) is not None
    assert seen == []


async def test_concurrent_demotions_keep_one_admin(auth: Auth) -> None:
    first = await auth.manager.create_user("root1", "R1", "human", [RoleBinding(Role.ADMIN)], PASSWORD)
    second = await auth.manager.create_user("root2", "R2", "human", [RoleBinding(Role.ADMIN)], PASSWORD)
    disable_first = (
        update(tables.principals).where(tables.principals.c.id == first.id).values(disabled=True, revision=99)
    )
    # Another replica disables root1 the way the repository does (admins locked first), and has not committed
    # when this one tries to disable root2: it must wait, then see that root2 is the last admin.
    async with auth.store.engine.connect() as connection:
        await connection.execution_options(**{BEGIN_IMMEDIATE: True})
        async with connection.begin():
            await connection.run_sync(lambda sync: enabled_admins(sync, lock=True))
            await connection.execute(disable_first)
            racing = asyncio.create_task(
                auth.another_manager().update_user(second.id, UserChanges(disabled=True), ["disabled"])
            )
            await asyncio.sleep(0.5)
            assert not racing.done()
    with pytest.raises(FailedPrecondition):
        await racing
    assert await auth.manager.count_admins() == 1


async def test_delete_removes_every_credential(auth: Auth) -> None:
    await auth.manager.create_user("root", "Root", "human", [RoleBinding(Role.ADMIN)], PASSWORD)
    alice = await auth.manager.create_user(
        "alice", "Alice", "human", [RoleBinding(Role.VIEWER), RoleBinding(Role.DEVELOPER, "billing")], PASSWORD
    )
    await auth.manager.create_api_key(alice.id, "laptop")
    await auth.manager.login("alice", PASSWORD)
    await auth.manager.delete_user(alice.id)

    def leftovers(connection: Any) -> dict[str, int]:
        children = (tables.api_keys, tables.refresh_tokens, tables.role_bindings, tables.password_hashes)
        return {
            table.name: int(
                connection.execute(
                    select(func.count()).select_from(table).where(table.c.principal_id == alice.id)
                ).scalar_one()
            )
            for table in children
        }

    assert set((await auth.store.run_in_transaction(leftovers)).values()) == {0}


async def test_concurrent_creates_of_one_username(auth: Auth) -> None:
    managers = [auth.manager, auth.another_manager(), auth.another_manager()]
    outcomes = await asyncio.gather(
        *(m.create_user("dup", "Dup", "service_account", []) for m in managers), return_exceptions=True
    )
    assert sum(isinstance(o, AlreadyExists) for o in outcomes) == 2


async def test_concurrent_bootstraps_create_one_admin(auth: Auth) -> None:
    managers = [auth.manager, auth.another_manager(), auth.another_manager()]
    results = await asyncio.gather(*(ensure_bootstrap_admin(m, None) for m in managers))
    assert sum(r.created for r in results) == 1
    assert await auth.manager.count_admins() == 1
    [created] = [r for r in results if r.created]
    assert created.generated_key is not None
    assert await auth.authenticator.authenticate({"x-api-key": created.generated_key}) is not None


async def test_bootstrap_blocked_by_a_non_admin_named_admin(auth: Auth) -> None:
    await auth.manager.create_user("admin", "Imposter", "service_account", [])
    with pytest.raises(FailedPrecondition):
        await ensure_bootstrap_admin(auth.manager, None)


async def test_audit_filter_and_pages(store: SqlStore) -> None:
    start = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    times = iter([start + timedelta(seconds=i // 2) for i in range(40)])  # pairs share a time
    log = AuditLog(store, clock=lambda: next(times))
    for index in range(40):
        log.record(AuditRecord(action="a.even" if index % 2 == 0 else "a.odd", outcome="ok", namespace="billing"))
    await log.flush()
    seen, token = [], ""
    while True:
        page, token = await log.list_events(7, token, 'namespace = "billing"')
        seen += page
        if not token:
            break
    assert len(seen) == 40
    assert len({e.id for e in seen}) == 40
    assert [(e.create_time, e.id) for e in seen] == sorted(((e.create_time, e.id) for e in seen), reverse=True)
    assert seen[0].create_time == start + timedelta(seconds=19)
    since = 'create_time >= "2026-03-01T12:00:10.123456Z" AND action = "a.odd"'
    recent, _ = await log.list_events(100, "", since)
    assert len(recent) == 10
    await log.close()
