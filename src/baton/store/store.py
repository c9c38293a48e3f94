"""The store: one interface over the database, whatever the backend.

`open_store()` makes the engine, checks that the database answers and that its schema is current
(migrating it when allowed). Repositories (handlers, tasks, auth) hang off the same SqlStore; they run a
transaction's statements in one hop with `run_in_transaction`, which matters on aiosqlite, where every
await crosses to the driver's thread.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

from sqlalchemy import func, select, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from baton.config import StorageConfig
from baton.store import migrate
from baton.store.engine import (
    BEGIN_IMMEDIATE,
    create_engine,
    create_sqlite_thread_engines,
    prepare_sqlite_file,
    redacted_url,
    sqlite_async_engine,
    sqlite_path,
    unavailable,
)
from baton.store.migrate import MigrationStatus
from baton.store.tables import TASK_STATES, tasks, workers
from baton.store.writer import GROUP_COMMIT_WINDOW, READERS, SqliteThreads

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")
Backend = Literal["sqlite", "postgresql"]


class Store(Protocol):
    """What the server needs from storage, whatever the backend."""

    @property
    def backend(self) -> Backend:
        """ "sqlite" or "postgresql"."""
        ...

    async def ping(self) -> float:
        """Round trip of a trivial query, in seconds; StorageUnavailable when the database does not answer."""
        ...

    async def migration_status(self) -> MigrationStatus:
        """The database's revision against the migrations this code knows."""
        ...

    async def count_tasks_by_state(self) -> dict[str, int]:
        """Number of tasks in each state, every state present."""
        ...

    async def count_active_workers(self, within_seconds: float) -> int:
        """Workers that polled or heartbeated within the last `within_seconds`."""
        ...

    async def run_in_transaction(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` synchronously in one transaction; commit when it returns, roll back when it raises."""
        ...

    async def close(self) -> None:
        """Close every pooled connection."""
        ...


class SqlStore:
    """The Store over SQLAlchemy: asyncpg (an AsyncEngine) for PostgreSQL; for a SQLite file, the stdlib driver in
    the store's threads (store/writer.py), with an aiosqlite AsyncEngine made only if something asks for
    `engine` (tests and tools; the server never does)."""

    def __init__(
        self,
        engine: AsyncEngine | None = None,
        *,
        url: URL | None = None,
        sqlite_busy_timeout_ms: int = 5000,
        sqlite_writes_on_loop: bool = True,
        sqlite_group_commit_ms: float = GROUP_COMMIT_WINDOW * 1000,
    ) -> None:
        if engine is not None:
            url = engine.url
        if url is None:
            raise TypeError("SqlStore needs an engine or a URL")
        self._engine = engine
        self._url = url
        self._busy_timeout_ms = sqlite_busy_timeout_ms
        self.url = redacted_url(url)
        self._threads: SqliteThreads | None = None
        if url.get_backend_name() == "sqlite" and sqlite_path(url) is not None:
            writer, reader = create_sqlite_thread_engines(url, sqlite_busy_timeout_ms, READERS)
            self._threads = SqliteThreads(
                writer,
                reader,
                on_loop=sqlite_writes_on_loop,
                group_commit_window=sqlite_group_commit_ms / 1000,
                busy_timeout_ms=sqlite_busy_timeout_ms,
            )
        elif engine is None:
            raise TypeError("only a SQLite file is served without an AsyncEngine")

    @classmethod
    def for_config(cls, config: StorageConfig) -> SqlStore:
        """The store of a configuration; nothing is connected yet. StorageUnavailable when a SQLite file's
        directory cannot be created or the file cannot be opened."""
        url = make_url(config.database_url.get_secret_value())
        if config.backend == "sqlite" and sqlite_path(url) is not None:
            prepare_sqlite_file(url)
            return cls(
                url=url,
                sqlite_busy_timeout_ms=config.sqlite_busy_timeout_ms,
                sqlite_writes_on_loop=config.sqlite_writes_on_loop,
                sqlite_group_commit_ms=config.sqlite_group_commit_ms,
            )
        return cls(create_engine(config), sqlite_busy_timeout_ms=config.sqlite_busy_timeout_ms)

    @property
    def engine(self) -> AsyncEngine:
        """The AsyncEngine over the same database (on a SQLite file, made on first use)."""
        if self._engine is None:
            self._engine = sqlite_async_engine(self._url, self._busy_timeout_ms)
        return self._engine

    @property
    def sync_engines(self) -> list[Engine]:
        """Every synchronous engine statements go through (for event listeners): the SQLite threads' engines, and
        the async engine's when there is one."""
        engines = [] if self._engine is None else [self._engine.sync_engine]
        if self._threads is not None:
            engines += [self._threads.writer, self._threads.reader]
        return engines

    @property
    def write_sequence(self) -> int | None:
        """On a SQLite file, the number of write transactions begun so far: they run one at a time in that order,
        so a transaction that begins when this reads n sees everything the first n-1 wrote. None elsewhere
        (PostgreSQL's transactions overlap)."""
        return None if self._threads is None else self._threads.writes_begun

    @property
    def backend(self) -> Backend:
        """ "sqlite" or "postgresql"."""
        return "sqlite" if self._url.get_backend_name() == "sqlite" else "postgresql"

    async def ping(self) -> float:
        """Round trip of `SELECT 1`, in seconds; StorageUnavailable when the database does not answer."""
        try:
            if self._threads is not None:
                return await self._threads.read(_timed_select_one)
            async with self.engine.connect() as connection:
                started = time.perf_counter()
                await connection.execute(text("SELECT 1"))
                return time.perf_counter() - started
        except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
            raise unavailable(self._url, exc) from exc

    async def migration_status(self) -> MigrationStatus:
        """The database's revision against the migrations this code knows."""
        return await migrate.status(self)

    async def count_tasks_by_state(self) -> dict[str, int]:
        """Number of tasks in each state, every state present (zero when none)."""
        query = select(tasks.c.state, func.count()).group_by(tasks.c.state)
        rows = await self.run_read(lambda connection: connection.execute(query).all())
        counts = dict.fromkeys(TASK_STATES, 0)
        counts.update({state: int(count) for state, count in rows})
        return counts

    async def count_active_workers(self, within_seconds: float) -> int:
        """Workers that polled or heartbeated within the last `within_seconds`."""
        since = datetime.now(UTC) - timedelta(seconds=within_seconds)
        query = select(func.count()).select_from(workers).where(workers.c.last_seen_time >= since)
        return int(await self.run_read(lambda connection: connection.execute(query).scalar_one()))

    async def run_in_transaction(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` synchronously in one transaction.

        Commits when `fn` returns and rolls back when it raises. On a SQLite file the whole transaction runs in
        the store's one writer thread (one hop, writers queued in-process); it takes the write lock at once
        (BEGIN IMMEDIATE), so another process's writer waits for it instead of failing.
        """
        if self._threads is not None:
            return await self._threads.write(fn)
        async with self.engine.connect() as connection:
            await connection.execution_options(**{BEGIN_IMMEDIATE: True})
            async with connection.begin():
                return await connection.run_sync(fn)

    async def write_turn(self) -> None:
        """Return when a write submitted right away joins the next transaction to begin (on SQLite, the writer's
        next group: `SqliteThreads.turn`); at once on PostgreSQL, where transactions do not queue."""
        if self._threads is not None:
            await self._threads.turn()

    async def run_read(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` synchronously in one read-only transaction (a consistent snapshot), without taking SQLite's
        write lock; on a SQLite file in one hop to a reader thread."""
        if self._threads is not None:
            return await self._threads.read(fn)
        async with self.engine.connect() as connection:
            return await connection.run_sync(fn)

    async def close(self) -> None:
        """Close every pooled connection."""
        if self._threads is not None:
            await self._threads.close()
        if self._engine is not None:
            await self._engine.dispose()


async def open_store(config: StorageConfig, *, auto_migrate: bool) -> SqlStore:
    """Open the configured database, check that it answers, and bring its schema to the current revision.

    Raises StorageUnavailable when the database cannot be opened, DatabaseTooNew when a newer Baton migrated
    it, MigrationsPending when it is behind and `auto_migrate` is false.
    """
    store = SqlStore.for_config(config)
    try:
        await store.ping()
        await migrate.ensure_current(store, auto_migrate)
    except BaseException:
        await store.close()
        raise
    return store


def _timed_select_one(connection: Connection) -> float:
    started = time.perf_counter()
    connection.exec_driver_sql("SELECT 1")
    return time.perf_counter() - started
