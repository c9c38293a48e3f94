"""execute_many writes exactly what Connection.execute(statement, rows) writes, on both backends, and fails the
same way; on SQLite times are stored as the dialect's own text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import DateTime, bindparam, create_engine, event, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError

from baton.engine import dispatch_sql, touched
from baton.store import SqlStore, bulk, tables
from baton.store.bulk import execute_many, fetch, run
from baton.store.tables import UtcDateTime
from tests.storage.conftest import Rows

_S = tables.steps.c
# Literal values bound by the statement itself (state, lease_expire_time), the rest from each row.
_COMPLETE = (
    update(tables.steps)
    .where(_S.id == bindparam("step_id"))
    .values(
        state="COMPLETED",
        result=bindparam("step_result", type_=_S.result.type),
        complete_time=bindparam("completed_at"),
        lease_expire_time=None,
        attempts=_S.attempts + bindparam("more", type_=_S.attempts.type),
    )
)


async def _steps(store: SqlStore, task_id: str) -> list[dict[str, Any]]:
    def read(connection: Any) -> list[dict[str, Any]]:
        query = select(tables.steps).where(_S.task_id == task_id).order_by(_S.name)
        return [dict(row._mapping) for row in connection.execute(query)]

    return await store.run_read(read)


async def test_inserts_and_updates_match_connection_execute(store: SqlStore, rows: Rows) -> None:
    first, second = await rows.task(), await rows.task()
    other_zone = timezone(timedelta(hours=-5))
    values = [
        {"ready_time": rows.now, "result": {"n": 1, "nested": [1, "two", None]}},
        {"ready_time": datetime(2026, 3, 4, 10, 0, tzinfo=other_zone), "result": None},
        {"ready_time": None, "result": {}},
    ]

    def insert(connection: Any, task_id: str, bulk: bool) -> None:
        batch = [rows.step_values(task_id, f"s{i}", **extra) for i, extra in enumerate(values)]
        if bulk:
            execute_many(connection, tables.steps.insert(), batch)
        else:
            connection.execute(tables.steps.insert(), batch)

    await store.run_in_transaction(lambda c: insert(c, first, bulk=False))
    await store.run_in_transaction(lambda c: insert(c, second, bulk=True))
    before_a, before_b = await _steps(store, first), await _steps(store, second)

    def complete(connection: Any, steps: list[dict[str, Any]], bulk: bool) -> None:
        batch = [
            {"step_id": step["id"], "step_result": {"i": i}, "completed_at": rows.now + timedelta(seconds=i), "more": i}
            for i, step in enumerate(steps)
        ]
        if bulk:
            execute_many(connection, _COMPLETE, batch)
        else:
            connection.execute(_COMPLETE, batch)

    await store.run_in_transaction(lambda c: complete(c, before_a, bulk=False))
    await store.run_in_transaction(lambda c: complete(c, before_b, bulk=True))

    def comparable(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in step.items() if k not in ("id", "task_id")} for step in steps]

    assert comparable(before_b) == comparable(before_a)
    assert before_b[1]["ready_time"] == datetime(2026, 3, 4, 15, 0, tzinfo=UTC)
    after_a, after_b = await _steps(store, first), await _steps(store, second)
    assert comparable(after_b) == comparable(after_a)
    assert [step["state"] for step in after_b] == ["COMPLETED"] * 3
    assert [step["attempts"] for step in after_b] == [0, 1, 2]
    assert after_b[2]["complete_time"] == rows.now + timedelta(seconds=2)
    assert after_b[1]["result"] == {"i": 1}

    if store.backend == "sqlite":  # the same text as the dialect's own storage format, so comparisons hold

        def stored(connection: Any) -> list[str]:
            query = text("SELECT complete_time FROM steps WHERE task_id = :t ORDER BY name")
            return list(connection.execute(query, {"t": second}).scalars())

        assert await store.run_read(stored) == [
            "2026-01-02 03:04:05.678901",
            "2026-01-02 03:04:06.678901",
            "2026-01-02 03:04:07.678901",
        ]


async def test_a_constraint_violation_is_the_usual_integrity_error(store: SqlStore, rows: Rows) -> None:
    task_id = await rows.task()
    step = rows.step_values(task_id, "only")

    def twice(connection: Any) -> None:
        execute_many(connection, tables.steps.insert(), [step, {**step, "name": "again"}])

    with pytest.raises(IntegrityError) as raised:
        await store.run_in_transaction(twice)
    assert await _steps(store, task_id) == []  # the transaction rolled back whole
    # Wrapped as Connection.execute wraps it, whether the driver ran it directly (SQLite) or SQLAlchemy did.
    assert raised.value.statement is not None
    assert raised.value.statement.startswith("INSERT INTO steps")
    assert type(raised.value.orig).__name__ in ("IntegrityError", "UniqueViolationError")


async def test_cursor_event_listeners_see_every_statement(store: SqlStore, rows: Rows) -> None:
    """With a listener on the engine, the rows go through SQLAlchemy, so it sees them (tests hold statements so)."""
    task_id = await rows.task()
    seen: list[str] = []

    def listener(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    batch = [rows.step_values(task_id, f"s{i}") for i in range(3)]
    for engine in store.sync_engines:
        event.listen(engine, "before_cursor_execute", listener)
    try:
        await store.run_in_transaction(lambda c: execute_many(c, tables.steps.insert(), batch))
    finally:
        for engine in store.sync_engines:
            event.remove(engine, "before_cursor_execute", listener)
    assert any(statement.startswith("INSERT INTO steps") for statement in seen)
    assert [step["name"] for step in await _steps(store, task_id)] == ["s0", "s1", "s2"]


def test_a_driver_connection_gone_invalidates_the_connection(tmp_path: Path) -> None:
    """On SQLite's direct path, an error meaning the connection is gone invalidates it, as SQLAlchemy would, so
    the writer thread replaces it; the error is SQLAlchemy's, marked so."""
    engine = create_engine(f"sqlite:///{tmp_path / 'gone.db'}")
    tables.metadata.create_all(engine)
    with engine.connect() as connection:
        connection.connection.driver_connection.close()  # type: ignore[union-attr]
        row = {"task_id": "t", "tag": "x"}
        with pytest.raises(DBAPIError) as raised:
            execute_many(connection, tables.task_tags.insert(), [row, {**row, "tag": "y"}])
        assert raised.value.connection_invalidated
        assert connection.invalidated
    engine.dispose()


async def test_nothing_to_write_is_no_statement(store: SqlStore) -> None:
    await store.run_in_transaction(lambda connection: execute_many(connection, tables.steps.insert(), []))


def test_sqlite_times_are_the_dialects_text_and_read_back_in_utc() -> None:
    dialect = sqlite.dialect()
    ours = UtcDateTime().dialect_impl(dialect)
    bind, result = ours.bind_processor(dialect), ours.result_processor(dialect, None)
    theirs = DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert bind is not None
    assert result is not None
    assert theirs is not None
    for value in (
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(2026, 12, 3, 7, 5, 9, tzinfo=UTC),
        datetime(2026, 12, 3, 7, 5, 9, 120, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ):
        assert bind(value) == theirs(value.replace(tzinfo=None))
        assert result(bind(value)) == value
    assert bind(datetime(2026, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))) == "2026-01-01 00:00:00.000000"
    assert bind(None) is None
    assert result(None) is None
    with pytest.raises(ValueError, match="naive"):
        bind(datetime(2026, 1, 1))
    # The same text again (rows of one transaction share its `now`) and other texts between: each its own value.
    first, second = "2026-12-03 07:00:00.000001", "2026-12-03 07:00:00.000002"
    for text_value in (first, first, second, first, second, second):
        assert result(text_value) == datetime.fromisoformat(text_value).replace(tzinfo=UTC)
    now = datetime(2026, 12, 3, 7, 0, 0, 3, tzinfo=UTC)
    assert [bind(now), bind(now), bind(now.replace(microsecond=4)), bind(now)] == [
        "2026-12-03 07:00:00.000003",
        "2026-12-03 07:00:00.000003",
        "2026-12-03 07:00:00.000004",
        "2026-12-03 07:00:00.000003",
    ]
    # Text written some other way (no fraction, fewer or more digits) still reads back.
    assert result("2026-12-03 07:00:00") == datetime(2026, 12, 3, 7, tzinfo=UTC)
    assert result("2026-12-03 07:00:00.5") == datetime(2026, 12, 3, 7, 0, 0, 500000, tzinfo=UTC)
    assert result("2026-12-03 07:00:00.1234567") == datetime(2026, 12, 3, 7, 0, 0, 123456, tzinfo=UTC)


_LESS = (
    update(tables.steps)
    .where(_S.id == bindparam("step_id"))
    .values(remaining_dependencies=_S.remaining_dependencies - bindparam("done"))
)


async def test_many_rows_in_chunks_and_repeated_keys_row_by_row(store: SqlStore, rows: Rows) -> None:
    """More rows than one multi-row statement takes (and a count that is no power of two) are all written; an
    UPDATE naming one row twice applies both, in order, as one execution per row would."""
    task_id = await rows.task()
    count = bulk.MAX_ROWS + 37
    batch = [rows.step_values(task_id, f"s{i:04}", remaining_dependencies=5) for i in range(count)]
    await store.run_in_transaction(lambda c: execute_many(c, tables.steps.insert(), batch))
    written = await _steps(store, task_id)
    assert [step["name"] for step in written] == [f"s{i:04}" for i in range(count)]
    ids = [step["id"] for step in written]

    distinct = [{"step_id": step_id, "done": i % 3} for i, step_id in enumerate(ids)]
    await store.run_in_transaction(lambda c: execute_many(c, _LESS, distinct))
    assert [step["remaining_dependencies"] for step in await _steps(store, task_id)] == [
        5 - i % 3 for i in range(count)
    ]

    repeated = [{"step_id": ids[0], "done": 1}, {"step_id": ids[1], "done": 1}, {"step_id": ids[0], "done": 2}]
    await store.run_in_transaction(lambda c: execute_many(c, _LESS, repeated))
    after = await _steps(store, task_id)
    assert [step["remaining_dependencies"] for step in after[:3]] == [2, 3, 3]


def test_sqlite_plans_write_several_rows_per_statement() -> None:
    """Which statements go as multi-row SQL on SQLite, and the SQL they go as."""
    dialect = sqlite.dialect()
    plan = bulk._plan(_LESS, dialect, ("step_id", "done"))
    assert plan is not None
    assert plan.multi_row is not None
    assert plan.multi_row.text(2) == (
        "UPDATE steps SET remaining_dependencies=(steps.remaining_dependencies - v.column1) "
        "FROM (VALUES (?, ?), (?, ?)) AS v WHERE steps.id = v.column2"
    )
    insert_plan = bulk._plan(tables.task_tags.insert(), dialect, ("task_id", "tag"))
    assert insert_plan is not None
    assert insert_plan.multi_row is not None
    assert insert_plan.multi_row.text(3) == "INSERT INTO task_tags (task_id, tag) VALUES (?, ?), (?, ?), (?, ?)"
    # Not by its primary key, or with RETURNING: one execution per row.
    by_task = update(tables.steps).where(_S.task_id == bindparam("t")).values(state="READY")
    returning = _LESS.returning(_S.id)
    for statement, keys in ((by_task, ("t",)), (returning, ("step_id", "done"))):
        other = bulk._plan(statement, dialect, keys)
        assert other is None or other.multi_row is None


async def test_fetch_reads_what_connection_execute_reads(store: SqlStore, rows: Rows) -> None:
    """Rows, values (times in UTC, JSON decoded), attributes and `_mapping`, on both backends."""
    task_id = await rows.task()
    batch = [
        rows.step_values(task_id, "a", ready_time=rows.now, retry_policy={"max": 2, "nested": [1, None]}),
        rows.step_values(task_id, "b", state="READY", ready_time=None),
    ]
    await store.run_in_transaction(lambda c: execute_many(c, tables.steps.insert(), batch))
    step_ids = [step["id"] for step in await _steps(store, task_id)]
    backend = store.backend
    by_id = touched._STEPS_BY_ID[backend]
    for_leases = touched._TASKS_FOR_LEASES[backend]

    def read(connection: Any) -> tuple[list[Any], ...]:
        return (
            fetch(connection, by_id, {"step_ids": step_ids}),
            list(connection.execute(by_id, {"step_ids": step_ids})),
            fetch(connection, for_leases, {"task_ids": [task_id]}),
            list(connection.execute(for_leases, {"task_ids": [task_id]})),
            fetch(connection, by_id, {"step_ids": ["no-such-step"]}),
        )

    steps_fast, steps_slow, tasks_fast, tasks_slow, none = await store.run_in_transaction(read)
    assert none == []
    for fast, slow in ((steps_fast, steps_slow), (tasks_fast, tasks_slow)):
        assert len(fast) == len(slow) > 0
        by_key = {row.id: row for row in slow}
        for row in fast:
            expected = by_key[row.id]
            assert tuple(row) == tuple(expected)
            assert dict(row._mapping) == dict(expected._mapping)
            assert [getattr(row, key) for key in expected._fields] == list(expected)
    step = next(row for row in steps_fast if row.name == "a")
    assert step.ready_time == rows.now
    assert step.ready_time.tzinfo == UTC
    assert step.retry_policy == {"max": 2, "nested": [1, None]}


async def test_fetch_and_run_with_returning_and_errors(store: SqlStore, rows: Rows) -> None:
    task_id = await rows.task()
    step = rows.step_values(task_id, "only")
    await store.run_in_transaction(lambda c: execute_many(c, tables.steps.insert(), [step]))
    renamed = update(tables.steps).where(_S.id == bindparam("step_id")).values(name=bindparam("new_name"))

    def change(connection: Any) -> list[Any]:
        run(connection, renamed, {"step_id": step["id"], "new_name": "renamed"})
        return fetch(connection, renamed.returning(_S.id, _S.name), {"step_id": step["id"], "new_name": "again"})

    assert [tuple(row) for row in await store.run_in_transaction(change)] == [(step["id"], "again")]
    clash = rows.step_values(task_id, "other")
    await store.run_in_transaction(lambda c: execute_many(c, tables.steps.insert(), [clash]))
    with pytest.raises(IntegrityError) as raised:  # (task_id, name) is unique
        await store.run_in_transaction(lambda c: run(c, renamed, {"step_id": clash["id"], "new_name": "again"}))
    assert raised.value.statement is not None
    assert raised.value.statement.startswith("UPDATE steps")
    assert [step["name"] for step in await _steps(store, task_id)] == ["again", "other"]


def test_the_engines_hot_statements_run_on_sqlites_driver() -> None:
    """The reads and updates of claims, completions and settling compile to direct plans: a change that made
    one go back through SQLAlchemy (silently slower) fails here."""
    dialect = sqlite.dialect()
    claim_parameters = {
        "in_namespace": "",
        **dispatch_sql._handler_parameters(["x"]),
        "due": None,
        "limit": 1,
        "leased_to": "",
        "started_at": None,
        "default_expiry": None,
    }
    reads = {
        "claim": (dispatch_sql._claim_statement("sqlite", 1), claim_parameters),
        "dependency results": (dispatch_sql._DEPENDENCY_RESULTS["sqlite"], {"step_ids": []}),
        "tasks by id": (touched._TASKS_BY_ID["sqlite"], {"task_ids": []}),
        "tasks for leases": (touched._TASKS_FOR_LEASES["sqlite"], {"task_ids": []}),
        "steps by id": (touched._STEPS_BY_ID["sqlite"], {"step_ids": []}),
        "dependents": (touched._DEPENDENTS["sqlite"], {"step_ids": []}),
        "now ready": (touched._NOW_READY["sqlite"], {"step_ids": []}),
        "step states": (touched._STEP_STATES["sqlite"], {"task_ids": []}),
    }
    for name, (statement, parameters) in reads.items():
        plan = bulk._compile_direct(statement, dialect, tuple(parameters))
        assert plan is not None, name
        assert plan.row_type is not None, name
    make_ready = bulk._compile_direct(touched._MAKE_READY["sqlite"], dialect, ("step_ids", "ready_at"))
    assert make_ready is not None
    assert make_ready.row_type is None
