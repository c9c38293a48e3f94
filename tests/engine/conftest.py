"""Fixtures for the engine correctness tests: a real server on SQLite (`server`) or on either backend
(`any_server`: a SQLite file, or a fresh PostgreSQL database from the session's PostgreSQL server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from baton.config import StorageConfig
from baton.store import SqlStore, open_store
from tests.support.server import RunningServer, make_config, running_server, server

__all__ = ["any_server", "backend_env", "server", "server_env", "sqlite_store", "sqlite_thread_store"]

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]
#: Many workers hammer one server here: rate limiting would only add RESOURCE_EXHAUSTED noise.
ENGINE_ENV = {"BATON_RATE_LIMIT_ENABLED": "false", "BATON_LOG_LEVEL": "warning", "BATON_ACCESS_LOG": "false"}


@pytest.fixture
def server_env() -> dict[str, str]:
    """The `server` fixture (SQLite) without rate limits."""
    return dict(ENGINE_ENV)


@pytest.fixture(params=BACKENDS)
def backend_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """BATON_* variables selecting the backend under test."""
    if request.param == "sqlite":
        return dict(ENGINE_ENV)
    return {**ENGINE_ENV, "BATON_DATABASE_URL": str(request.getfixturevalue("postgresql_url"))}


@pytest.fixture
async def any_server(tmp_path: Path, backend_env: dict[str, str]) -> AsyncIterator[RunningServer]:
    """A Baton server on an ephemeral loopback port over the backend under test; stopped afterwards."""
    async with running_server(make_config(tmp_path, **backend_env)) as running:
        yield running


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    """A migrated store on a SQLite file, for tests that drive the engine in process."""
    store = await open_store(
        StorageConfig(database_url=f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"), auto_migrate=True
    )
    yield store
    await store.close()


@pytest.fixture
async def sqlite_thread_store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    """A migrated store on a SQLite file whose writes run in the writer thread, for tests that hold a write
    transaction open in the middle of a statement (on the event loop that would hold the loop, and the test)."""
    store = await open_store(
        StorageConfig(database_url=f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}", sqlite_writes_on_loop=False),
        auto_migrate=True,
    )
    yield store
    await store.close()
