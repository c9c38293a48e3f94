"""Schema migrations through Alembic, driven from code over the async engine (no alembic.ini).

Each operation runs in one transaction on one connection (`AsyncConnection.run_sync`); on PostgreSQL an
advisory lock serialises replicas that start together, so only one of them migrates.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from baton.store.engine import BEGIN_IMMEDIATE, redacted_url, unavailable
from baton.store.errors import DatabaseTooNew, MigrationsPending
from baton.store.migrations import HEAD_REVISION

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# pg_advisory_xact_lock key shared by every Baton migrating the same database ("baton" in ASCII).
_MIGRATION_LOCK_KEY = 0x626174_6F6E

T = TypeVar("T")


@runtime_checkable
class Database(Protocol):
    """A store that runs synchronous functions in transactions of its own (SqlStore): migrations then go the way
    the store's other transactions go (on a SQLite file, its writer thread; no async engine needed)."""

    url: str

    async def run_in_transaction(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in one write transaction."""
        ...

    async def run_read(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in one read transaction."""
        ...


@dataclass(frozen=True)
class MigrationStatus:
    """Where the database stands against the migrations this code knows."""

    current: str | None
    head: str
    pending: list[str]
    is_current: bool
    is_newer: bool


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config for Baton's migrations, optionally bound to an open connection."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision this code knows."""
    head = _scripts().get_current_head()
    if head is None:  # pragma: no cover - the package always ships 0001_initial
        raise RuntimeError(f"no migrations in {MIGRATIONS_DIR}")
    return head


def _fast_status(connection: Connection) -> MigrationStatus | None:
    """The status of a database already at HEAD_REVISION, read without loading Alembic (which costs more
    start-up time than the rest of the store); None when Alembic must look."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    versions = [row[0] for row in connection.exec_driver_sql("SELECT version_num FROM alembic_version")]
    if versions != [HEAD_REVISION]:
        return None
    return MigrationStatus(HEAD_REVISION, HEAD_REVISION, [], is_current=True, is_newer=False)


def _status(connection: Connection) -> MigrationStatus:
    fast = _fast_status(connection)
    if fast is not None:
        return fast
    from alembic.runtime.migration import MigrationContext

    scripts = _scripts()
    head = head_revision()
    current = MigrationContext.configure(connection).get_current_revision()
    known = {script.revision for script in scripts.walk_revisions()}
    if current is not None and current not in known:
        return MigrationStatus(current, head, [], is_current=False, is_newer=True)
    pending = [script.revision for script in scripts.iterate_revisions(head, current or "base")]
    pending.reverse()
    return MigrationStatus(current, head, pending, is_current=not pending, is_newer=False)


def _lock_for_migration(connection: Connection) -> None:
    """On PostgreSQL, wait for any other replica migrating the same database (released at the transaction's end)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})")


def _check_not_newer(connection: Connection) -> MigrationStatus:
    _lock_for_migration(connection)
    status = _status(connection)
    if status.is_newer:
        assert status.current is not None
        raise DatabaseTooNew(redacted_url(connection.engine.url), status.current, status.head)
    return status


def _upgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    _check_not_newer(connection)
    command.upgrade(alembic_config(connection), revision)


def _downgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    _check_not_newer(connection)
    command.downgrade(alembic_config(connection), revision)


@asynccontextmanager
async def _transaction(engine: AsyncEngine, *, write: bool) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction; StorageUnavailable when the database cannot be reached.

    A writing transaction on SQLite takes the write lock first, so a second migrator waits and then finds
    the work done, as the advisory lock arranges on PostgreSQL.
    """
    try:
        connection = await engine.connect()
        if write:
            await connection.execution_options(**{BEGIN_IMMEDIATE: True})
    except (SQLAlchemyError, OSError) as exc:
        raise unavailable(engine.url, exc) from exc
    try:
        async with connection.begin():
            yield connection
    finally:
        await connection.close()


async def _run(target: AsyncEngine | Database, fn: Callable[[Connection], T], *, write: bool = False) -> T:
    if isinstance(target, Database):
        return await (target.run_in_transaction(fn) if write else target.run_read(fn))
    async with _transaction(target, write=write) as connection:
        return await connection.run_sync(fn)


async def upgrade(engine: AsyncEngine | Database, revision: str = "head") -> None:
    """Migrate the database up to `revision` (the newest by default)."""
    await _run(engine, lambda connection: _upgrade(connection, revision), write=True)


async def downgrade(engine: AsyncEngine | Database, revision: str) -> None:
    """Migrate the database down to `revision` ("base" empties it)."""
    await _run(engine, lambda connection: _downgrade(connection, revision), write=True)


async def status(engine: AsyncEngine | Database) -> MigrationStatus:
    """The database's revision against the migrations this code knows."""
    return await _run(engine, _status)


def _create_if_empty(connection: Connection) -> bool:
    """On a database without a single table, create the schema of the newest revision from tables.py and stamp
    it, in this transaction, without loading Alembic; False (and nothing done) when any table exists.

    This is Alembic's cookbook recipe "Building an Up to Date Database from Scratch" (create_all, then stamp
    head): a new database skips replaying the history. tests/storage/test_migrate.py checks on both backends
    that the schema it builds is the one the migrations build, table by table, column by column, constraint by
    constraint.
    """
    from baton.store import tables

    _lock_for_migration(connection)
    if inspect(connection).get_table_names():
        return False
    tables.metadata.create_all(connection)
    connection.exec_driver_sql(
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
        "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
    )
    connection.execute(
        text("INSERT INTO alembic_version (version_num) VALUES (:revision)"), {"revision": HEAD_REVISION}
    )
    return True


async def create_if_empty(engine: AsyncEngine | Database) -> bool:
    """Create and stamp the newest schema on an empty database (see `_create_if_empty`); False when it has tables."""
    return await _run(engine, _create_if_empty, write=True)


async def ensure_current(engine: AsyncEngine | Database, auto_migrate: bool) -> MigrationStatus:
    """Bring the database to the newest revision when allowed; refuse one that is newer than this code.

    A new, empty database gets the newest schema in one step (`create_if_empty`); one with tables is migrated
    revision by revision through Alembic. Raises DatabaseTooNew when a newer Baton migrated the database,
    MigrationsPending when it is behind and `auto_migrate` is false.
    """
    if auto_migrate and await create_if_empty(engine):
        return MigrationStatus(HEAD_REVISION, HEAD_REVISION, [], is_current=True, is_newer=False)
    current = await status(engine)
    if current.is_newer:
        assert current.current is not None
        raise DatabaseTooNew(redacted_url(engine.url), current.current, current.head)
    if current.is_current:
        return current
    if not auto_migrate:
        raise MigrationsPending(redacted_url(engine.url), current.current, current.head, current.pending)
    await upgrade(engine)
    return await status(engine)
