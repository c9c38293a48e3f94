"""Group commit in the SQLite writer: writes queued behind a busy writer share its next transaction, each in a
savepoint, so each commits or fails as if it had a transaction of its own (store/writer.py).

The writer runs on the event loop by default and in its thread with BATON_SQLITE_WRITES_ON_LOOP=false (and when
another connection holds the database's lock): every group-commit test runs both ways. On the loop, the writer is
"busy" for the group-commit window after each transaction, which these tests make long (HOLD_MS)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from baton.config import StorageConfig
from baton.engine.batching import Coalescer
from baton.store import SqlStore, open_store, tables

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .conftest import Rows

#: The group-commit window of the on-loop writer in these tests: long enough that writes submitted within a
#: test's short sleeps all wait for it.
HOLD_MS = 100.0


@pytest.fixture
def backend() -> str:
    """The writer (and so group commit) is SQLite's only."""
    return "sqlite"


@pytest.fixture(params=["loop", "thread"])
def writer_mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def storage_config(database_url: str, writer_mode: str) -> StorageConfig:
    on_loop = writer_mode == "loop"
    return StorageConfig(
        database_url=database_url,
        sqlite_busy_timeout_ms=5000,
        sqlite_writes_on_loop=on_loop,
        sqlite_group_commit_ms=HOLD_MS if on_loop else 0,
    )


def _sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def _counts() -> tuple[float, float]:
    return _sample("baton_sqlite_write_transactions_total"), _sample("baton_sqlite_writes_total")


async def _hold_the_writer(store: SqlStore, writer_mode: str) -> tuple[asyncio.Future[None], threading.Event]:
    """A write that keeps the writer busy until the returned event is set (so the next writes queue up).

    On the loop the write ends at once, and the writes that follow within the group-commit window wait for it."""
    inside, release = threading.Event(), threading.Event()

    def hold(connection: Connection) -> None:
        connection.execute(select(1))
        inside.set()
        if writer_mode == "thread":
            release.wait(10)

    held = asyncio.ensure_future(store.run_in_transaction(hold))
    if writer_mode == "loop":
        await held
    assert await asyncio.to_thread(inside.wait, 10)
    return held, release


def _count_tasks(connection: Connection) -> int:
    return int(connection.execute(select(func.count()).select_from(tables.tasks)).scalar_one())


async def test_writes_queued_behind_a_busy_writer_share_one_transaction_and_fail_alone(
    store: SqlStore, rows: Rows, writer_mode: str
) -> None:
    await rows.task()
    transactions, writes = _counts()
    sequence = store.write_sequence
    assert sequence is not None
    held, release = await _hold_the_writer(store, writer_mode)

    def insert_one(connection: Connection) -> int:
        connection.execute(tables.tasks.insert(), rows.task_values())
        return _count_tasks(connection)

    def insert_then_fail(connection: Connection) -> None:
        connection.execute(tables.tasks.insert(), [rows.task_values(), rows.task_values()])
        assert _count_tasks(connection) == 4  # it sees its own rows and those of the write before it
        raise RuntimeError("changed my mind")

    queued = [
        asyncio.ensure_future(store.run_in_transaction(fn))
        for fn in (insert_one, insert_then_fail, insert_one, _count_tasks)
    ]
    await asyncio.sleep(0.02)  # all four are queued behind the held write
    release.set()
    await held
    first, failed, third, count = await asyncio.gather(*queued, return_exceptions=True)

    assert (first, third, count) == (2, 3, 3), "each saw the committed writes before it, not the failed one's"
    assert isinstance(failed, RuntimeError)
    assert str(failed) == "changed my mind"
    assert await store.run_read(_count_tasks) == 3
    after_transactions, after_writes = _counts()
    assert (after_transactions - transactions, after_writes - writes) == (2, 5), "the held write, then one group"
    assert store.write_sequence == sequence + 5, "every write of the group is numbered in the order it ran"


async def test_failures_anywhere_in_a_group_take_back_only_their_own_rows(
    store: SqlStore, rows: Rows, writer_mode: str
) -> None:
    """Savepoints are not released one by one (each write's nests in the one before, and the COMMIT releases them
    all): a failing first write, failures back to back and a failure after a success each undo their own rows."""
    await rows.task()
    held, release = await _hold_the_writer(store, writer_mode)

    def insert(count: int, fail: bool) -> Callable[[Connection], int]:
        def write(connection: Connection) -> int:
            connection.execute(tables.tasks.insert(), [rows.task_values() for _ in range(count)])
            if fail:
                raise RuntimeError(f"no {count}")
            return _count_tasks(connection)

        return write

    plan = [(2, True), (1, False), (3, True), (4, True), (1, False), (5, True), (1, False)]
    queued = [asyncio.ensure_future(store.run_in_transaction(insert(n, fail))) for n, fail in plan]
    await asyncio.sleep(0.02)
    release.set()
    await held
    outcomes = await asyncio.gather(*queued, return_exceptions=True)

    assert [str(o) if isinstance(o, RuntimeError) else o for o in outcomes] == ["no 2", 2, "no 3", "no 4", 3, "no 5", 4]
    assert await store.run_read(_count_tasks) == 4


async def test_a_write_cancelled_before_it_began_is_not_run(store: SqlStore, rows: Rows, writer_mode: str) -> None:
    await rows.task()
    held, release = await _hold_the_writer(store, writer_mode)
    ran = threading.Event()

    def insert(connection: Connection) -> None:
        ran.set()
        connection.execute(tables.tasks.insert(), rows.task_values())

    cancelled = asyncio.ensure_future(store.run_in_transaction(insert))
    kept = asyncio.ensure_future(store.run_in_transaction(_count_tasks))
    await asyncio.sleep(0.02)
    cancelled.cancel()
    release.set()
    await held

    assert await kept == 1
    assert cancelled.cancelled()
    assert not ran.is_set()
    assert await store.run_read(_count_tasks) == 1


async def test_an_error_that_ends_the_transaction_fails_the_writes_that_ran_and_the_rest_run_after(
    store: SqlStore, rows: Rows, writer_mode: str
) -> None:
    """SQLite rolls a transaction back by itself on some errors (a full disk, an I/O error): the writes that ran
    in it are lost, so they fail with that error; those behind it had not begun and run in the next transaction."""
    await rows.task()
    held, release = await _hold_the_writer(store, writer_mode)

    def insert(connection: Connection) -> None:
        connection.execute(tables.tasks.insert(), rows.task_values())

    def lose_the_transaction(connection: Connection) -> None:
        connection.execute(tables.tasks.insert(), rows.task_values())
        driver = connection.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        driver.execute("ROLLBACK")  # what SQLite does itself on SQLITE_FULL or SQLITE_IOERR
        raise sqlite3.OperationalError("database or disk is full")

    queued = [asyncio.ensure_future(store.run_in_transaction(fn)) for fn in (insert, lose_the_transaction, insert)]
    await asyncio.sleep(0.02)
    release.set()
    await held
    before, losing, behind = await asyncio.gather(*queued, return_exceptions=True)

    assert isinstance(losing, sqlite3.OperationalError)
    assert before is losing, "the write before it was rolled back with it, and is told why"
    assert behind is None
    assert await store.run_read(_count_tasks) == 2, "the first task and the write that ran after"
    assert await store.run_in_transaction(_count_tasks) == 2, "the writer goes on"


@pytest.fixture
async def loop_store(tmp_path: Path) -> AsyncIterator[tuple[SqlStore, Path]]:
    """A store whose writes run on the loop (with the long window of HOLD_MS), and its database file."""
    path = tmp_path / "loop.db"
    config = StorageConfig(database_url=f"sqlite+aiosqlite:///{path}", sqlite_group_commit_ms=HOLD_MS)
    store = await open_store(config, auto_migrate=True)
    yield store, path
    await store.close()


def _insert_namespace(name: str) -> Callable[[Connection], str]:
    def write(connection: Connection) -> str:
        connection.execute(tables.namespaces.insert(), {"name": name, "create_time": datetime.now(UTC)})
        return threading.current_thread().name

    return write


async def test_on_the_loop_a_lone_write_runs_in_the_loops_own_turn_and_a_burst_shares_one_transaction(
    loop_store: tuple[SqlStore, Path],
) -> None:
    store, _ = loop_store
    await asyncio.sleep(1.5 * HOLD_MS / 1000)  # past the window of the migrations' last write
    began = time.perf_counter()
    assert await store.run_in_transaction(_insert_namespace("alone")) == threading.current_thread().name
    assert time.perf_counter() - began < HOLD_MS / 2000, "a write after a quiet spell does not wait for the window"

    transactions, writes = _counts()
    names = await asyncio.gather(*(store.run_in_transaction(_insert_namespace(f"burst-{i}")) for i in range(10)))
    assert set(names) == {threading.current_thread().name}
    assert _counts() == (transactions + 1, writes + 10), "writes of one loop turn share one transaction"


async def test_on_the_loop_writes_that_find_the_database_locked_wait_in_the_thread_not_on_the_loop(
    loop_store: tuple[SqlStore, Path],
) -> None:
    """Another process holding SQLite's write lock (a CLI, a second server) must not stop the event loop: the
    writes go to the writer thread, which waits for the lock, and come back to the loop once it is free."""
    store, path = loop_store
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        queued = [asyncio.ensure_future(store.run_in_transaction(_insert_namespace(f"late-{i}"))) for i in range(3)]
        worst_lag = 0.0
        for _ in range(15):  # the loop keeps its pace while the writes wait for the lock
            before = time.perf_counter()
            await asyncio.sleep(0.02)
            worst_lag = max(worst_lag, time.perf_counter() - before - 0.02)
        assert not any(write.done() for write in queued)
        other.execute("COMMIT")
        names = await asyncio.wait_for(asyncio.gather(*queued), 10)
    finally:
        other.close()
    assert worst_lag < 0.1
    assert all(name.startswith("baton-sqlite-writer") for name in names), names
    count = await store.run_read(lambda c: c.execute(select(func.count()).select_from(tables.namespaces)).scalar())
    assert count == 3

    assert await store.run_in_transaction(_insert_namespace("back")) == threading.current_thread().name


def _namespace_batcher(store: SqlStore, batches: list[list[str]]) -> Coalescer[str, str]:
    """A batcher as the task engine's creates have: each batch (recorded in `batches`) inserts its names as
    namespaces in one write, taken at the writer's turn."""

    async def write(names: list[str]) -> list[str | Exception]:
        batches.append(names)

        def insert(connection: Connection) -> None:
            for name in names:
                _insert_namespace(name)(connection)

        await store.run_in_transaction(insert)
        return list(names)

    return Coalescer(write, 100, store.write_turn)


async def test_a_batcher_that_waits_for_the_writers_turn_takes_its_batch_into_the_next_transaction(
    loop_store: tuple[SqlStore, Path],
) -> None:
    """The task engine gathers CreateTask calls (Coalescer) and takes its batch at the writer's turn: calls that
    come during the group-commit window go into the transaction that window opens for, not the one after it."""
    store, _ = loop_store
    batches: list[list[str]] = []
    creates = _namespace_batcher(store, batches)
    await store.run_in_transaction(_insert_namespace("opens-the-window"))
    transactions, _ = _counts()
    first = asyncio.ensure_future(creates.submit("first"))
    await asyncio.sleep(HOLD_MS / 4000)  # inside the window that the last transaction opened
    assert batches == [], "the batch is not taken before the writer's turn"
    later = [asyncio.ensure_future(creates.submit(f"later-{i}")) for i in range(3)]
    await asyncio.sleep(HOLD_MS / 4000)
    assert await asyncio.wait_for(asyncio.gather(first, *later), 5) == ["first", "later-0", "later-1", "later-2"]
    assert batches == [["first", "later-0", "later-1", "later-2"]], "one batch of every caller of the window"
    assert _counts()[0] == transactions + 1


async def test_the_writers_turn_does_not_wait_when_writes_run_in_the_thread(tmp_path: Path) -> None:
    config = StorageConfig(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'thread.db'}",
        sqlite_writes_on_loop=False,
        sqlite_group_commit_ms=HOLD_MS,
    )
    store = await open_store(config, auto_migrate=True)
    try:
        await asyncio.wait_for(store.write_turn(), HOLD_MS / 4000)
    finally:
        await store.close()


async def test_the_writers_turn_after_a_quiet_spell_comes_in_the_same_loop_turn_as_a_write(
    loop_store: tuple[SqlStore, Path],
) -> None:
    store, _ = loop_store
    await asyncio.sleep(1.5 * HOLD_MS / 1000)  # past the window of the migrations' last write
    began = time.perf_counter()
    await store.write_turn()
    assert time.perf_counter() - began < HOLD_MS / 2000
    await store.run_in_transaction(_insert_namespace("after-the-turn"))


async def test_closing_the_store_writes_the_batch_waiting_for_the_writers_turn(tmp_path: Path) -> None:
    path = tmp_path / "closing.db"
    config = StorageConfig(database_url=f"sqlite+aiosqlite:///{path}", sqlite_group_commit_ms=HOLD_MS)
    store = await open_store(config, auto_migrate=True)
    creates = _namespace_batcher(store, [])
    await store.run_in_transaction(_insert_namespace("opens-the-window"))
    pending = asyncio.ensure_future(creates.submit("at-close"))
    for _ in range(3):  # the call queues, and the batcher starts waiting for the writer's turn (inside the window)
        await asyncio.sleep(0)
    assert not pending.done()
    await store.close()
    database = sqlite3.connect(path)
    try:  # read before anything else runs on the loop: the write was committed by the time close() returned
        assert database.execute("SELECT count(*) FROM namespaces WHERE name = 'at-close'").fetchone() == (1,)
    finally:
        database.close()
    assert await asyncio.wait_for(pending, 5) == "at-close"


def test_the_configurations_default_window_is_the_writers() -> None:
    """The configuration does not import the storage layer (nor SQLAlchemy behind it), so the default is written
    twice: the two must agree."""
    from baton.store.writer import GROUP_COMMIT_WINDOW

    default = StorageConfig.model_fields["sqlite_group_commit_ms"].default
    assert default == GROUP_COMMIT_WINDOW * 1000
