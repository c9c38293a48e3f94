"""SqlStore on both backends: ping, status, counts, and transactions run in one hop."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from baton.config import StorageConfig
from baton.store import SqlStore, Store, open_store, tables
from baton.store.migrate import head_revision

if TYPE_CHECKING:
    from .conftest import Rows


async def test_store_satisfies_the_store_protocol(store: SqlStore) -> None:
    typed: Store = store

    assert typed.backend == store.backend


async def test_backend_names_the_database(store: SqlStore, backend: str) -> None:
    assert store.backend == backend


async def test_ping_returns_a_positive_round_trip(store: SqlStore) -> None:
    round_trip = await store.ping()

    assert 0 < round_trip < 5


async def test_open_store_leaves_the_schema_current(store: SqlStore) -> None:
    status = await store.migration_status()

    assert status.is_current
    assert status.current == head_revision()


async def test_count_tasks_by_state_counts_every_state(store: SqlStore, rows: Rows) -> None:
    assert await store.count_tasks_by_state() == dict.fromkeys(tables.TASK_STATES, 0)
    for state in ("PENDING", "PENDING", "RUNNING", "FAILED"):
        await rows.task(state=state)

    counts = await store.count_tasks_by_state()

    assert counts == {"PENDING": 2, "RUNNING": 1, "COMPLETED": 0, "FAILED": 1, "CANCELLED": 0}


async def test_run_in_transaction_commits_what_fn_did_and_returns_its_value(store: SqlStore, rows: Rows) -> None:
    await rows.task()

    def insert_two_and_count(connection: Connection) -> int:
        connection.execute(tables.tasks.insert(), [rows.task_values(), rows.task_values()])
        return int(connection.execute(select(func.count()).select_from(tables.tasks)).scalar_one())

    assert await store.run_in_transaction(insert_two_and_count) == 3
    assert sum((await store.count_tasks_by_state()).values()) == 3


async def test_run_in_transaction_rolls_back_when_fn_raises(store: SqlStore, rows: Rows) -> None:
    await rows.task()

    def insert_then_fail(connection: Connection) -> None:
        connection.execute(tables.tasks.insert(), rows.task_values())
        raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        await store.run_in_transaction(insert_then_fail)

    assert sum((await store.count_tasks_by_state()).values()) == 1


async def test_concurrent_read_then_write_transactions_all_commit(store: SqlStore, rows: Rows) -> None:
    """Each reads, then writes: on SQLite they must queue for the write lock rather than fail as busy."""
    task_id = await rows.task()
    revision = tables.tasks.c.revision

    def bump(connection: Connection) -> None:
        connection.execute(select(revision).where(tables.tasks.c.id == task_id)).scalar_one()
        connection.execute(tables.tasks.update().where(tables.tasks.c.id == task_id).values(revision=revision + 1))

    await asyncio.gather(*(store.run_in_transaction(bump) for _ in range(20)))

    final = await store.run_in_transaction(
        lambda connection: connection.execute(select(revision).where(tables.tasks.c.id == task_id)).scalar_one()
    )
    assert final == 21


async def test_sqlite_checkpoints_run_in_a_thread_beside_the_writer(store: SqlStore, backend: str) -> None:
    """On SQLite the WAL is checkpointed in the background while writes go on, and the writer's own automatic
    checkpoint only starts at WAL_AUTOCHECKPOINT pages."""
    if backend != "sqlite":
        pytest.skip("SQLite's WAL only")
    from baton.store import writer

    threads = store._threads
    assert threads is not None
    before = threads.checkpoints

    def add(connection: Connection, name: str) -> None:
        connection.execute(tables.namespaces.insert().values(name=name, create_time=func.current_timestamp()))

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    written = 0
    while threads.checkpoints == before and loop.time() < deadline:
        await store.run_in_transaction(partial(add, name=f"ns-{written}"))
        written += 1
        await asyncio.sleep(0.01)
    assert threads.checkpoints > before, "no background checkpoint ran"
    count = await store.run_read(lambda c: c.execute(select(func.count()).select_from(tables.namespaces)).scalar())
    assert count == written
    autocheckpoint = await store.run_in_transaction(lambda c: c.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar())
    assert autocheckpoint == writer.WAL_AUTOCHECKPOINT


async def test_sqlite_writer_load_is_measured(storage_config: StorageConfig, backend: str) -> None:
    """The writer's transactions, busy and CPU seconds and queueing are counted: a transaction that sleeps in the
    writer thread is busy but not on the CPU, one that fails is counted too, and one submitted behind it queues."""
    if backend != "sqlite":
        pytest.skip("the SQLite writer thread only")
    store = await open_store(storage_config.model_copy(update={"sqlite_writes_on_loop": False}), auto_migrate=True)
    try:
        await _measure_the_writer_thread(store)
    finally:
        await store.close()


async def _measure_the_writer_thread(store: SqlStore) -> None:

    from prometheus_client import REGISTRY

    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    names = (
        "baton_sqlite_write_transactions_total",
        "baton_sqlite_writer_busy_seconds_total",
        "baton_sqlite_writer_cpu_seconds_total",
        "baton_sqlite_write_queue_seconds_count",
        "baton_sqlite_write_queue_seconds_sum",
    )
    before = {name: sample(name) for name in names}

    def slow(connection: Connection) -> None:
        connection.execute(select(1))
        time.sleep(0.1)

    def fail(connection: Connection) -> None:
        raise RuntimeError("rolled back")

    first = asyncio.ensure_future(store.run_in_transaction(slow))
    await asyncio.sleep(0.02)  # the slow transaction is in the writer now
    await asyncio.gather(first, store.run_in_transaction(lambda c: c.execute(select(1)).scalar()))
    with pytest.raises(RuntimeError):
        await store.run_in_transaction(fail)
    after = {name: sample(name) - before[name] for name in names}
    assert after["baton_sqlite_write_transactions_total"] == 3
    assert after["baton_sqlite_write_queue_seconds_count"] == 3
    assert after["baton_sqlite_writer_busy_seconds_total"] >= 0.1
    assert after["baton_sqlite_writer_cpu_seconds_total"] < after["baton_sqlite_writer_busy_seconds_total"] - 0.05
    assert after["baton_sqlite_write_queue_seconds_sum"] >= 0.05, "the second transaction waited behind the first"
