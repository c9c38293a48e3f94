"""Engines: SQLite pragmas on every connection, URLs without passwords, databases that cannot be opened."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.config import StorageConfig
from baton.store import StorageUnavailable, create_engine, open_store, redacted_url

SECRET = "s3cret-Pa55word"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def sqlite_pragmas(engine: AsyncEngine) -> dict[str, object]:
    async with engine.connect() as connection:
        return {
            name: (await connection.execute(text(f"PRAGMA {name}"))).scalar()
            for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
        }


async def test_sqlite_pragmas_hold_on_every_connection(tmp_path: Path) -> None:
    config = StorageConfig(database_url=f"sqlite+aiosqlite:///{tmp_path / 'baton.db'}", sqlite_busy_timeout_ms=1234)
    engine = create_engine(config)
    try:
        # Two connections held at once: the second is a new one, not the first one reused.
        first, second = await asyncio.gather(sqlite_pragmas(engine), sqlite_pragmas(engine))
    finally:
        await engine.dispose()

    expected = {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 1234, "synchronous": 1}
    assert first == expected
    assert second == expected


async def test_sqlite_parent_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "baton.db"
    store = await open_store(StorageConfig(database_url=f"sqlite+aiosqlite:///{path}"), auto_migrate=True)
    await store.close()

    assert path.is_file()


def test_sqlite_directory_that_cannot_be_created_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # even root cannot make a directory inside a file
    config = StorageConfig(database_url=f"sqlite+aiosqlite:///{blocker / 'sub' / 'baton.db'}")

    with pytest.raises(StorageUnavailable, match="cannot create directory") as raised:
        create_engine(config)

    assert str(blocker / "sub" / "baton.db") in str(raised.value)


async def test_sqlite_file_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "baton.db").mkdir()  # a directory where the database file should be
    config = StorageConfig(database_url=f"sqlite+aiosqlite:///{tmp_path / 'baton.db'}")

    with pytest.raises(StorageUnavailable, match="unable to open database file") as raised:
        await open_store(config, auto_migrate=True)

    assert "\n" not in str(raised.value)


async def test_postgresql_with_nothing_listening_is_unavailable_without_the_password() -> None:
    url = f"postgresql+asyncpg://baton:{SECRET}@127.0.0.1:{free_port()}/baton"

    with pytest.raises(StorageUnavailable) as raised:
        await open_store(StorageConfig(database_url=url), auto_migrate=True)

    message = str(raised.value)
    assert SECRET not in message
    assert "postgresql+asyncpg://baton:***@127.0.0.1" in message
    assert "\n" not in message


@pytest.mark.postgres
async def test_postgresql_with_a_wrong_password_is_unavailable_without_it(postgresql_url: str) -> None:
    url = postgresql_url.replace(":baton-test-pw@", f":{SECRET}@")

    with pytest.raises(StorageUnavailable, match="password authentication failed") as raised:
        await open_store(StorageConfig(database_url=url), auto_migrate=True)

    assert SECRET not in str(raised.value)


def test_redacted_url_hides_the_password_only() -> None:
    assert redacted_url(f"postgresql+asyncpg://u:{SECRET}@db:5432/baton") == "postgresql+asyncpg://u:***@db:5432/baton"
    assert redacted_url("sqlite+aiosqlite:///./baton.db") == "sqlite+aiosqlite:///./baton.db"
    assert redacted_url("not a url") == "<unparseable database URL>"


def test_sqlite_library_older_than_baton_needs_is_unavailable(tmp_path: Path) -> None:
    """An old SQLite library (RETURNING, UPDATE … FROM or json_each missing) stops start-up with both versions
    named; the library this Python links passes."""
    from sqlalchemy.engine import make_url

    from baton.store.engine import MIN_SQLITE_VERSION, check_sqlite_library

    url = make_url(f"sqlite+aiosqlite:///{tmp_path}/baton.db")
    check_sqlite_library(url)
    with pytest.raises(StorageUnavailable) as caught:
        check_sqlite_library(url, (3, 31, 1))
    assert "SQLite 3.31.1 is too old" in caught.value.reason
    assert ".".join(map(str, MIN_SQLITE_VERSION)) in caught.value.reason


def test_none_binds_as_null_through_its_adapter(tmp_path: Path) -> None:
    """The store registers an adapter for None (a failed attribute lookup on every NULL bound, without it): NULL
    is still what is stored, through the driver directly and through SQLAlchemy."""
    import sqlite3

    import baton.store.engine

    assert (type(None), sqlite3.PrepareProtocol) in sqlite3.adapters
    assert baton.store.engine.sqlite3 is sqlite3
    connection = sqlite3.connect(tmp_path / "nulls.db")
    connection.execute("CREATE TABLE t (a, b NOT NULL DEFAULT 1)")
    connection.execute("INSERT INTO t (a, b) VALUES (?, ?)", (None, 2))
    assert connection.execute("SELECT a IS NULL, typeof(a), b FROM t").fetchall() == [(1, "null", 2)]
    with pytest.raises(sqlite3.IntegrityError):  # NOT NULL still refuses it
        connection.execute("INSERT INTO t (a, b) VALUES (?, ?)", (1, None))
    connection.close()
