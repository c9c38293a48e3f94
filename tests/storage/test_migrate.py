"""Migrations on both backends: status, upgrade, downgrade, drift against tables.py, refusing the unknown."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.config import StorageConfig
from baton.store import DatabaseTooNew, MigrationsPending, migrate, open_store, tables
from baton.store.migrate import head_revision
from tests.storage.conftest import Rows

SCHEMA_TABLES = set(tables.metadata.tables)
ALL_REVISIONS = ["0001_initial", "0002_checks_without_in_lists"]


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))


def schema_diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
    return list(compare_metadata(context, tables.metadata))


async def test_fresh_database_is_pending_then_current_after_upgrade(engine: AsyncEngine) -> None:
    before = await migrate.status(engine)
    assert before.current is None
    assert before.pending == ALL_REVISIONS
    assert not before.is_current
    assert not before.is_newer

    await migrate.upgrade(engine)

    after = await migrate.status(engine)
    assert after.current == after.head == head_revision()
    assert after.pending == []
    assert after.is_current
    assert await table_names(engine) == SCHEMA_TABLES | {"alembic_version"}


async def test_downgrade_to_base_drops_every_table_and_upgrade_works_again(engine: AsyncEngine) -> None:
    await migrate.upgrade(engine)

    await migrate.downgrade(engine, "base")

    assert await table_names(engine) <= {"alembic_version"}
    assert (await migrate.status(engine)).current is None

    await migrate.upgrade(engine)
    assert await table_names(engine) == SCHEMA_TABLES | {"alembic_version"}
    assert (await migrate.status(engine)).is_current


async def test_migrated_schema_matches_the_table_metadata(engine: AsyncEngine) -> None:
    await migrate.upgrade(engine)

    async with engine.connect() as connection:
        diff = await connection.run_sync(schema_diff)

    assert diff == []


async def test_a_revision_unknown_to_this_code_is_database_too_new(
    engine: AsyncEngine, storage_config: StorageConfig
) -> None:
    await migrate.upgrade(engine)
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))

    status = await migrate.status(engine)
    assert status.is_newer
    assert not status.is_current
    with pytest.raises(DatabaseTooNew, match="9999_from_the_future") as raised:
        await migrate.ensure_current(engine, auto_migrate=True)
    with pytest.raises(DatabaseTooNew):
        await migrate.upgrade(engine)
    with pytest.raises(DatabaseTooNew):
        await open_store(storage_config, auto_migrate=True)

    message = str(raised.value)
    assert engine.url.render_as_string(hide_password=True) in message
    if engine.url.password:
        assert str(engine.url.password) not in message


async def test_behind_without_auto_migrate_is_migrations_pending(
    engine: AsyncEngine, storage_config: StorageConfig
) -> None:
    with pytest.raises(MigrationsPending, match="0001_initial") as raised:
        await migrate.ensure_current(engine, auto_migrate=False)
    with pytest.raises(MigrationsPending):
        await open_store(storage_config, auto_migrate=False)

    assert await table_names(engine) <= {"alembic_version"}
    assert raised.value.pending == ALL_REVISIONS
    if engine.url.password:
        assert str(engine.url.password) not in str(raised.value)


async def test_ensure_current_migrates_when_allowed_and_then_does_nothing(engine: AsyncEngine) -> None:
    first = await migrate.ensure_current(engine, auto_migrate=True)
    second = await migrate.ensure_current(engine, auto_migrate=False)

    assert first.is_current
    assert second == first


async def test_replicas_migrating_at_once_migrate_once(storage_config: StorageConfig) -> None:
    stores = await asyncio.gather(*(open_store(storage_config, auto_migrate=True) for _ in range(3)))
    try:
        statuses = [await store.migration_status() for store in stores]
    finally:
        for store in stores:
            await store.close()

    assert all(status.is_current for status in statuses)


def test_head_revision_constant_matches_alembic() -> None:
    from baton.store.migrate import head_revision
    from baton.store.migrations import HEAD_REVISION

    assert head_revision() == HEAD_REVISION, "update HEAD_REVISION in baton/store/migrations/__init__.py"


def reflected_schema(connection: Connection) -> dict[str, Any]:
    """Everything the database says about its tables, in a form two databases can be compared by."""
    inspector = inspect(connection)
    schema: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        schema[table] = {
            "columns": [
                (column["name"], str(column["type"]), column["nullable"], str(column.get("default")))
                for column in inspector.get_columns(table)
            ],
            "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
            "foreign_keys": sorted(
                (
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    str(fk["options"]),
                )
                for fk in inspector.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (
                    index["name"],
                    tuple(str(c) for c in index["column_names"]),
                    bool(index["unique"]),
                    str(sorted((k, str(v)) for k, v in index.get("dialect_options", {}).items())),
                )
                for index in inspector.get_indexes(table)
            ),
            "unique": sorted(tuple(unique["column_names"]) for unique in inspector.get_unique_constraints(table)),
            "checks": sorted(" ".join(check["sqltext"].split()) for check in inspector.get_check_constraints(table)),
        }
    return schema


async def test_a_new_database_gets_the_migrated_schema_in_one_step(engine: AsyncEngine) -> None:
    status = await migrate.ensure_current(engine, auto_migrate=True)
    assert status.is_current
    assert (await migrate.status(engine)).current == head_revision()
    async with engine.connect() as connection:
        created = await connection.run_sync(reflected_schema)
        assert await connection.run_sync(schema_diff) == []
    assert not await migrate.create_if_empty(engine), "a database with tables is never created over"

    # The same database taken down and up again through every Alembic revision: the schema must be identical.
    await migrate.downgrade(engine, "base")
    await migrate.upgrade(engine)
    async with engine.connect() as connection:
        migrated = await connection.run_sync(reflected_schema)

    assert created.keys() == migrated.keys()
    for table in created:
        assert created[table] == migrated[table], table


async def test_0002_rewrites_the_state_checks_and_keeps_every_row(engine: AsyncEngine) -> None:
    """A database at 0001 holding a task, its step and events goes to 0002 with all of them (on SQLite no table is
    dropped and recreated, which would cascade to the steps and events); the constraints then allow the same values,
    NULL included, refuse the same others, and read as tables.py writes them."""
    await migrate.upgrade(engine, "0001_initial")

    class AtRevision:  # what Rows needs of a store, on the engine at 0001 (whose columns tables.py still has)
        async def run_in_transaction(self, fn: Any) -> Any:
            async with engine.begin() as connection:
                return await connection.run_sync(fn)

    rows = Rows(AtRevision())  # type: ignore[arg-type]
    task = await rows.task(state="RUNNING")
    step_row = rows.step_values(task, "charge", state="READY")
    step = step_row["id"]
    event = {
        "task_id": task,
        "sequence": 1,
        "task_state": "RUNNING",
        "reason": "created",
        "actor": "alice",
        "create_time": rows.now,
    }

    def insert(connection: Connection) -> None:
        connection.execute(tables.steps.insert(), step_row)
        connection.execute(tables.task_events.insert(), event)

    await AtRevision().run_in_transaction(insert)

    await migrate.upgrade(engine)

    async with engine.connect() as connection:
        counts = [
            (await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()  # noqa: S608
            for table in ("tasks", "steps", "task_events")
        ]
        checks = await connection.run_sync(lambda sync: inspect(sync).get_check_constraints("steps"))
    assert counts == [1, 1, 1]
    (state_check,) = [check for check in checks if check["name"] == "ck_steps_state"]
    assert " IN " not in state_check["sqltext"].upper()
    async with engine.begin() as connection:  # every allowed value, and NULL where the column is nullable
        for state in tables.STEP_STATES:
            await connection.execute(text("UPDATE steps SET state = :s WHERE id = :id"), {"s": state, "id": step})
        await connection.execute(text("UPDATE task_events SET previous_step_state = NULL, step_state = 'READY'"))
    for statement in (
        "UPDATE steps SET state = 'BOGUS'",
        "UPDATE tasks SET state = 'READY'",  # a step state, not a task state
        "UPDATE task_events SET previous_task_state = 'running'",
    ):
        with pytest.raises(IntegrityError):
            async with engine.begin() as connection:
                await connection.execute(text(statement))
