"""The store: one interface over the database, whatever the backend.

`open_store()` makes the engine, checks that the database answers and that its schema is current
(migrating it when allowed). Repositories (handlers, tasks, auth) hang off the same SqlStore; they run a
transaction's statements in one hop with `run_in_transaction`, which matters on aiosqlite, where every
await crosses to the driver's thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol, TypeVar

from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.config import StorageConfig
from baton.store import migrate
from baton.store.engine import (
    BEGIN_IMMEDIATE,
    create_engine,
    create_sqlite_thread_engines,
    redacted_url,
    sqlite_path,
    unavailable,
)
from baton.store.migrate import MigrationStatus
from baton.store.tables import TASK_STATES, tasks, workers
from baton.store.writer import READERS, SqliteThreads

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
    """The Store over a SQLAlchemy AsyncEngine (aiosqlite or asyncpg)."""

    def __init__(self, engine: AsyncEngine, *, sqlite_busy_timeout_ms: int = 5000) -> None:
        self.engine = engine
        self.url = redacted_url(engine.url)
        self._threads: SqliteThreads | None = None
        if engine.dialect.name == "sqlite" and sqlite_path(engine.url) is not None:
            writer, reader = create_sqlite_thread_engines(engine.url, sqlite_busy_timeout_ms, READERS)
            self._threads = SqliteThreads(writer, reader)

    @property
    def sync_engines(self) -> list[Engine]:
        """Every synchronous engine statements go through (for event listeners): the async engine's, and the
        SQLite writer's."""
        engines = [self.engine.sync_engine]
        if self._threads is not None:
            engines += [self._threads.writer, self._threads.reader]
        return engines

    @property
    def backend(self) -> Backend:
        """ "sqlite" or "postgresql"."""
        return "sqlite" if self.engine.dialect.name == "sqlite" else "postgresql"

    async def ping(self) -> float:
        """Round trip of `SELECT 1`, in seconds; StorageUnavailable when the database does not answer."""
        try:
            async with self.engine.connect() as connection:
                started = time.perf_counter()
                await connection.execute(text("SELECT 1"))
                return time.perf_counter() - started
        except (SQLAlchemyError, OSError) as exc:
            raise unavailable(self.engine.url, exc) from exc

    async def migration_status(self) -> MigrationStatus:
        """The database's revision against the migrations this code knows."""
        return await migrate.status(self.engine)

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
        await self.engine.dispose()


async def open_store(config: StorageConfig, *, auto_migrate: bool) -> SqlStore:
    """Open the configured database, check that it answers, and bring its schema to the current revision.

    Raises StorageUnavailable when the database cannot be opened, DatabaseTooNew when a newer Baton migrated
    it, MigrationsPending when it is behind and `auto_migrate` is false.
    """
    store = SqlStore(create_engine(config), sqlite_busy_timeout_ms=config.sqlite_busy_timeout_ms)
    try:
        await store.ping()
        await migrate.ensure_current(store.engine, auto_migrate)
    except BaseException:
        await store.close()
        raise
    return store
