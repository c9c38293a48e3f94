"""Group commit in the SQLite writer: writes queued behind a busy writer share its next transaction, each in a
savepoint, so each commits or fails as if it had a transaction of its own (store/writer.py)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from baton.store import SqlStore, tables

if TYPE_CHECKING:
    from .conftest import Rows


@pytest.fixture
def backend() -> str:
    """The writer thread (and so group commit) is SQLite's only."""
    return "sqlite"


def _sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def _counts() -> tuple[float, float]:
    return _sample("baton_sqlite_write_transactions_total"), _sample("baton_sqlite_writes_total")


async def _hold_the_writer(store: SqlStore) -> tuple[asyncio.Future[None], threading.Event]:
    """A write that keeps the writer busy until the returned event is set (so the next writes queue up)."""
    inside, release = threading.Event(), threading.Event()

    def hold(connection: Connection) -> None:
        connection.execute(select(1))
        inside.set()
        release.wait(10)

    held = asyncio.ensure_future(store.run_in_transaction(hold))
    assert await asyncio.to_thread(inside.wait, 10)
    return held, release


def _count_tasks(connection: Connection) -> int:
    return int(connection.execute(select(func.count()).select_from(tables.tasks)).scalar_one())


async def test_writes_queued_behind_a_busy_writer_share_one_transaction_and_fail_alone(
    store: SqlStore, rows: Rows
) -> None:
    await rows.task()
    transactions, writes = _counts()
    sequence = store.write_sequence
    assert sequence is not None
    held, release = await _hold_the_writer(store)

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
    await asyncio.sleep(0.05)  # all four are queued behind the held write
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


async def test_failures_anywhere_in_a_group_take_back_only_their_own_rows(store: SqlStore, rows: Rows) -> None:
    """Savepoints are not released one by one (each write's nests in the one before, and the COMMIT releases them
    all): a failing first write, failures back to back and a failure after a success each undo their own rows."""
    await rows.task()
    held, release = await _hold_the_writer(store)

    def insert(count: int, fail: bool) -> Callable[[Connection], int]:
        def write(connection: Connection) -> int:
            connection.execute(tables.tasks.insert(), [rows.task_values() for _ in range(count)])
            if fail:
                raise RuntimeError(f"no {count}")
            return _count_tasks(connection)

        return write

    plan = [(2, True), (1, False), (3, True), (4, True), (1, False), (5, True), (1, False)]
    queued = [asyncio.ensure_future(store.run_in_transaction(insert(n, fail))) for n, fail in plan]
    await asyncio.sleep(0.05)
    release.set()
    await held
    outcomes = await asyncio.gather(*queued, return_exceptions=True)

    assert [str(o) if isinstance(o, RuntimeError) else o for o in outcomes] == ["no 2", 2, "no 3", "no 4", 3, "no 5", 4]
    assert await store.run_read(_count_tasks) == 4


async def test_a_write_cancelled_before_it_began_is_not_run(store: SqlStore, rows: Rows) -> None:
    await rows.task()
    held, release = await _hold_the_writer(store)
    ran = threading.Event()

    def insert(connection: Connection) -> None:
        ran.set()
        connection.execute(tables.tasks.insert(), rows.task_values())

    cancelled = asyncio.ensure_future(store.run_in_transaction(insert))
    kept = asyncio.ensure_future(store.run_in_transaction(_count_tasks))
    await asyncio.sleep(0.05)
    cancelled.cancel()
    release.set()
    await held

    assert await kept == 1
    assert cancelled.cancelled()
    assert not ran.is_set()
    assert await store.run_read(_count_tasks) == 1


async def test_an_error_that_ends_the_transaction_fails_the_writes_that_ran_and_the_rest_run_after(
    store: SqlStore, rows: Rows
) -> None:
    """SQLite rolls a transaction back by itself on some errors (a full disk, an I/O error): the writes that ran
    in it are lost, so they fail with that error; those behind it had not begun and run in the next transaction."""
    await rows.task()
    held, release = await _hold_the_writer(store)

    def insert(connection: Connection) -> None:
        connection.execute(tables.tasks.insert(), rows.task_values())

    def lose_the_transaction(connection: Connection) -> None:
        connection.execute(tables.tasks.insert(), rows.task_values())
        driver = connection.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        driver.execute("ROLLBACK")  # what SQLite does itself on SQLITE_FULL or SQLITE_IOERR
        raise sqlite3.OperationalError("database or disk is full")

    queued = [asyncio.ensure_future(store.run_in_transaction(fn)) for fn in (insert, lose_the_transaction, insert)]
    await asyncio.sleep(0.05)
    release.set()
    await held
    before, losing, behind = await asyncio.gather(*queued, return_exceptions=True)

    assert isinstance(losing, sqlite3.OperationalError)
    assert before is losing, "the write before it was rolled back with it, and is told why"
    assert behind is None
    assert await store.run_read(_count_tasks) == 2, "the first task and the write that ran after"
    assert await store.run_in_transaction(_count_tasks) == 2, "the writer goes on"
