"""The async engine for a StorageConfig: aiosqlite (WAL) or asyncpg, set up the same way every time.

SQLite connections get their pragmas on connect (WAL, busy timeout, foreign keys, synchronous=NORMAL), and the
driver's own transaction handling is replaced by explicit BEGINs, so DDL is transactional and SAVEPOINTs work.
A connection whose execution options hold `sqlite_begin_immediate=True` begins with BEGIN IMMEDIATE: it takes
the write lock up front and so waits (busy_timeout) instead of failing when two writers meet.

JSON columns (task contexts, results, retry policies, handler definitions) are written and read by orjson on
every engine (`JSON_OPTIONS`), with the standard library as the fallback for what orjson refuses (integers past 64
bits, keys that are not strings). NaN and Infinity never reach a column: requests carrying them are refused at
the API, and handler definitions are encoded with `allow_nan=False`. Digests and fingerprints of JSON are made
with the standard library explicitly (domain/handlers.py, the request hashes), so they do not depend on this.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import orjson
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from baton.config import StorageConfig
from baton.store.errors import StorageUnavailable

if TYPE_CHECKING:
    # sqlalchemy.ext.asyncio loads the ORM (a tenth of the server's start-up): a SQLite file is served by the
    # store's threads and never needs it, so it is imported only where an async engine is made.
    from sqlalchemy.ext.asyncio import AsyncEngine

POSTGRES_CONNECT_TIMEOUT_SECONDS = 10.0
BEGIN_IMMEDIATE = "sqlite_begin_immediate"

# NULL parameters. The driver adapts every parameter that is not exactly an int, float, str or bytearray, and for
# None that was a failed attribute lookup (`__adapt__` on the protocol's type: an AttributeError formatted, then
# cleared) on every bind: about 0.3 µs a NULL, and the engine's rows carry several each. An adapter registered for
# None is found first, in the adapters' table; `{}.get` returns None from C, without a Python frame. NULL is bound
# as before (the driver binds a None it gets back as NULL).
_none_adapter: dict[None, None] = {}
sqlite3.register_adapter(type(None), cast("Callable[[None], None]", _none_adapter.get))


def json_text(value: Any) -> str:
    """A JSON column's value as text: orjson's (compact), or the standard library's for what orjson refuses."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(value)


def json_value(text: str | bytes) -> Any:
    """A JSON column's text as a value."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


#: How every engine encodes and decodes JSON columns.
JSON_OPTIONS: dict[str, Any] = {"json_serializer": json_text, "json_deserializer": json_value}


def redacted_url(url: str | URL) -> str:
    """The URL as text with its password replaced by `***`, for messages and logs."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return "<unparseable database URL>"
    return parsed.render_as_string(hide_password=True)


def unavailable(url: URL, exc: BaseException) -> StorageUnavailable:
    """StorageUnavailable for a failure to reach the database, its reason one line without the password."""
    cause: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    while cause.__cause__ is not None:  # the driver's own exception, under the DBAPI adapter's
        cause = cause.__cause__
    lines = str(cause).strip().splitlines()
    reason = f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__
    if url.password:
        reason = reason.replace(str(url.password), "***")
    return StorageUnavailable(redacted_url(url), reason)


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL; None for an in-memory database."""
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def create_engine(config: StorageConfig) -> AsyncEngine:
    """An AsyncEngine for the configured database; nothing is connected yet.

    For SQLite the parent directory of the file is created and the file opened once; StorageUnavailable when
    either fails.
    """
    from sqlalchemy.ext.asyncio import create_async_engine

    url = make_url(config.database_url.get_secret_value())
    if config.backend == "sqlite":
        prepare_sqlite_file(url)
        return sqlite_async_engine(url, config.sqlite_busy_timeout_ms)
    return create_async_engine(
        url,
        **JSON_OPTIONS,
        pool_size=config.pool_size,
        max_overflow=0,
        pool_pre_ping=True,
        connect_args={
            "timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS,
            "server_settings": {"application_name": "baton"},
        },
    )


def _probe_sqlite_file(url: URL, path: Path) -> None:
    # Fail here, with the plain driver: aiosqlite leaves its worker thread behind when a connect fails.
    try:
        with contextlib.closing(sqlite3.connect(path)) as connection:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise unavailable(url, exc) from exc


#: The oldest SQLite library Baton runs on: RETURNING (3.35), UPDATE … FROM (3.33) and JSON functions built in
#: (3.38; json_each binds the key lists of store/keys.py).
MIN_SQLITE_VERSION = (3, 38, 0)


def check_sqlite_library(url: URL, version: tuple[int, int, int] = sqlite3.sqlite_version_info) -> None:
    """StorageUnavailable, naming the versions, when the SQLite library Python links is older than Baton needs or
    lacks its JSON functions."""
    found = ".".join(map(str, version))
    needed = ".".join(map(str, MIN_SQLITE_VERSION))
    if version < MIN_SQLITE_VERSION:
        raise StorageUnavailable(
            redacted_url(url), f"SQLite {found} is too old: Baton needs {needed} or later (Python's sqlite3 links it)"
        )
    try:
        with contextlib.closing(sqlite3.connect(":memory:")) as connection:
            connection.execute("SELECT count(*) FROM json_each('[1]')").fetchone()
    except sqlite3.Error as exc:
        raise StorageUnavailable(redacted_url(url), f"SQLite {found} has no JSON functions ({exc})") from exc


def prepare_sqlite_file(url: URL) -> None:
    """Check the SQLite library, create the parent directory of a SQLite file and open the file once;
    StorageUnavailable when any fails. An in-memory database only needs the library."""
    check_sqlite_library(url)
    path = sqlite_path(url)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(
                redacted_url(url), f"cannot create directory {str(path.parent)!r}: {exc.strerror}"
            ) from exc
        _probe_sqlite_file(url, path)


def sqlite_async_engine(url: URL, busy_timeout_ms: int) -> AsyncEngine:
    """An aiosqlite AsyncEngine with Baton's pragmas and explicit BEGINs."""
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url, **JSON_OPTIONS)
    _configure_sqlite(engine.sync_engine, busy_timeout_ms)
    return engine


def create_sqlite_thread_engines(url: URL, busy_timeout_ms: int, readers: int) -> tuple[Engine, Engine]:
    """Synchronous engines (the stdlib sqlite3 driver) over the same file: a writer holding one connection, and a
    reader pool of `readers` connections, for the store's threads (see store/writer.py)."""
    sync_url = url.set(drivername="sqlite+pysqlite")
    # The driver's prepared-statement cache (128 by default) holds the multi-row INSERTs of store/bulk.py too.
    thread_free = {"check_same_thread": False, "cached_statements": 512}
    writer = sa_create_engine(sync_url, poolclass=StaticPool, connect_args=thread_free, **JSON_OPTIONS)
    reader = sa_create_engine(sync_url, pool_size=readers, max_overflow=0, connect_args=thread_free, **JSON_OPTIONS)
    for engine in (writer, reader):
        _configure_sqlite(engine, busy_timeout_ms)
    return writer, reader


def _ensure_wal(cursor: Any, busy_timeout_ms: int) -> None:
    """Put the database in WAL mode (it stays so), unless it is already.

    Switching needs the database to itself, and SQLite answers "database is locked" at once rather than waiting
    when another connection holds it (several replicas opening a new file together): retry until the busy timeout.
    """
    cursor.execute("PRAGMA journal_mode")
    row = cursor.fetchone()
    if row is not None and str(row[0]).lower() == "wal":
        return
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:  # aiosqlite raises the driver's own error
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Autocommit at the driver level; SQLAlchemy's "begin" event below emits BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            _ensure_wal(cursor, busy_timeout_ms)
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(BEGIN_IMMEDIATE, False)
        # Straight to the driver's cursor: exec_driver_sql's statement machinery cost as much as the transaction's
        # own statements on the writer (there is nothing to compile, bind or fetch here).
        cursor = connection.connection.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        finally:
            cursor.close()
