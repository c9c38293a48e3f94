"""The storage contract suite runs every test against each backend: a SQLite file and a real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.config import StorageConfig
from baton.store import SqlStore, create_engine, new_id, open_store, tables

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test."""
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """An empty database of the backend under test: a file in tmp_path, or a fresh PostgreSQL database."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'baton.db'}"
    return str(request.getfixturevalue("postgresql_url"))


@pytest.fixture
def storage_config(database_url: str) -> StorageConfig:
    """Storage configuration for the database under test."""
    return StorageConfig(database_url=database_url, pool_size=4, sqlite_busy_timeout_ms=5000)


@pytest.fixture
async def engine(storage_config: StorageConfig) -> AsyncIterator[AsyncEngine]:
    """An engine on the empty (unmigrated) database."""
    engine = create_engine(storage_config)
    yield engine
    await engine.dispose()


@pytest.fixture
async def store(storage_config: StorageConfig) -> AsyncIterator[SqlStore]:
    """An open store on a migrated database."""
    store = await open_store(storage_config, auto_migrate=True)
    yield store
    await store.close()


class Rows:
    """Inserts minimal valid rows for tests: a namespace and handler on first use, then tasks and steps."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.now = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
        self._handler_ready = False

    async def _ensure_handler(self) -> None:
        if self._handler_ready:
            return
        handler = {
            "id": new_id(),
            "namespace": "billing",
            "name": "invoice",
            "version": "1.0.0",
            "version_major": 1,
            "version_minor": 0,
            "version_patch": 0,
            "description": "",
            "definition": {"steps": []},
            "definition_digest": "0" * 64,
            "create_time": self.now,
        }

        def insert(connection: Any) -> None:
            connection.execute(tables.namespaces.insert(), {"name": "billing", "create_time": self.now})
            connection.execute(tables.handlers.insert(), handler)

        await self.store.run_in_transaction(insert)
        self._handler_ready = True

    def task_values(self, **overrides: Any) -> dict[str, Any]:
        """Column values of a valid task; `overrides` win."""
        values: dict[str, Any] = {
            "id": new_id(),
            "namespace": "billing",
            "handler_name": "invoice",
            "handler_version": "1.0.0",
            "state": "PENDING",
            "context": {"amount": 3},
            "tags": [],
            "correlation_id": "corr",
            "request_id": None,
            "creator": "alice",
            "trace_context": {},
            "create_time": self.now,
            "update_time": self.now,
        }
        return values | overrides

    async def task(self, **overrides: Any) -> str:
        """Insert a task; returns its id."""
        await self._ensure_handler()
        values = self.task_values(**overrides)
        await self.store.run_in_transaction(lambda connection: connection.execute(tables.tasks.insert(), values))
        return str(values["id"])

    def step_values(self, task_id: str, name: str, **overrides: Any) -> dict[str, Any]:
        """Column values of a valid step of a task; `overrides` win."""
        values: dict[str, Any] = {
            "id": new_id(),
            "task_id": task_id,
            "namespace": "billing",
            "name": name,
            "position": 0,
            "step_handler": "charge",
            "state": "PENDING",
            "max_attempts": 3,
            "retry_policy": {},
            "lease_timeout_seconds": 30.0,
        }
        return values | overrides


@pytest.fixture
def rows(store: SqlStore) -> Rows:
    """Row factory on the store under test."""
    return Rows(store)
