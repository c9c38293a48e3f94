"""The schema's rules hold on both backends: foreign keys, cascades, uniqueness, CHECKs, types."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import CheckConstraint, Text, cast, func, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, StatementError

from baton.store import SqlStore, new_id, tables

if TYPE_CHECKING:
    from .conftest import Rows


def count(table: Any) -> Any:
    return lambda connection: connection.execute(select(func.count()).select_from(table)).scalar_one()


def test_every_constraint_and_index_has_a_name() -> None:
    for table in tables.metadata.tables.values():
        assert table.primary_key.name, table.name
        for constraint in table.constraints:
            assert constraint.name, (table.name, constraint)
        for index in table.indexes:
            assert index.name, (table.name, index)


async def test_check_constraints_in_the_database_match_the_metadata(store: SqlStore) -> None:
    def reflected(connection: Connection) -> set[tuple[str, str]]:
        inspector = inspect(connection)
        return {
            (table, str(check["name"]))
            for table in tables.metadata.tables
            for check in inspector.get_check_constraints(table)
        }

    expected = {
        (table.name, str(constraint.name))
        for table in tables.metadata.tables.values()
        for constraint in table.constraints
        if isinstance(constraint, CheckConstraint)
    }
    assert await store.run_in_transaction(reflected) == expected


async def test_deleting_a_task_deletes_its_steps_dependencies_events_and_tags(store: SqlStore, rows: Rows) -> None:
    task_id = await rows.task()
    fetch = rows.step_values(task_id, "fetch")
    charge = rows.step_values(task_id, "charge", position=1, remaining_dependencies=1)

    def fill(connection: Connection) -> None:
        connection.execute(tables.steps.insert(), [fetch, charge])
        connection.execute(
            tables.step_dependencies.insert(),
            {"task_id": task_id, "step_id": charge["id"], "depends_on_step_id": fetch["id"]},
        )
        connection.execute(
            tables.task_events.insert(),
            {"task_id": task_id, "sequence": 1, "task_state": "PENDING", "reason": "", "actor": "alice"}
            | {"create_time": rows.now},
        )
        connection.execute(tables.task_tags.insert(), {"task_id": task_id, "tag": "urgent"})

    await store.run_in_transaction(fill)
    dependents = (tables.steps, tables.step_dependencies, tables.task_events, tables.task_tags)
    assert [await store.run_in_transaction(count(table)) for table in dependents] == [2, 1, 1, 1]

    await store.run_in_transaction(
        lambda connection: connection.execute(tables.tasks.delete().where(tables.tasks.c.id == task_id))
    )

    assert [await store.run_in_transaction(count(table)) for table in dependents] == [0, 0, 0, 0]


async def test_a_step_of_an_unknown_task_is_refused(store: SqlStore, rows: Rows) -> None:
    orphan = rows.step_values(new_id(), "fetch")

    with pytest.raises(IntegrityError):
        await store.run_in_transaction(lambda connection: connection.execute(tables.steps.insert(), orphan))


async def test_a_task_of_an_unregistered_handler_version_is_refused(store: SqlStore, rows: Rows) -> None:
    await rows.task()

    with pytest.raises(IntegrityError):
        await rows.task(handler_version="9.9.9")


async def test_one_task_per_namespace_creator_and_request_id(store: SqlStore, rows: Rows) -> None:
    await rows.task(request_id="req-1", creator="alice")
    await rows.task(request_id="req-1", creator="bob")  # another caller may use the same key
    await rows.task(request_id=None, creator="alice")
    await rows.task(request_id=None, creator="alice")  # tasks without a key never collide

    with pytest.raises(IntegrityError):
        await rows.task(request_id="req-1", creator="alice")

    assert await store.run_in_transaction(count(tables.tasks)) == 4


async def test_unknown_states_are_refused(store: SqlStore, rows: Rows) -> None:
    task_id = await rows.task()

    with pytest.raises(IntegrityError):
        await rows.task(state="SLEEPING")
    with pytest.raises(IntegrityError):
        await store.run_in_transaction(
            lambda connection: connection.execute(
                tables.steps.insert(), rows.step_values(task_id, "fetch", state="LOST")
            )
        )


async def test_times_come_back_timezone_aware_in_utc(store: SqlStore, rows: Rows) -> None:
    created = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=timezone(timedelta(hours=2)))
    task_id = await rows.task(create_time=created)

    stored = await store.run_in_transaction(
        lambda connection: connection.execute(
            select(tables.tasks.c.create_time, tables.tasks.c.complete_time).where(tables.tasks.c.id == task_id)
        ).one()
    )

    assert stored.create_time == created
    assert stored.create_time.tzinfo == UTC
    assert stored.complete_time is None


async def test_naive_times_are_refused(store: SqlStore, rows: Rows) -> None:
    await rows.task()

    with pytest.raises(StatementError, match="naive datetime"):
        await rows.task(create_time=datetime(2026, 1, 1))


async def test_json_round_trips_and_absent_results_stay_null(store: SqlStore, rows: Rows) -> None:
    context = {"amount": 3.5, "items": [1, "two", None], "nested": {"ok": True}}
    task_id = await rows.task(context=context, tags=["a", "b"], trace_context={"traceparent": "00-abc-def-01"})
    step = rows.step_values(task_id, "fetch", result=None, last_error={"error_type": "Timeout", "attempt": 1})
    await store.run_in_transaction(lambda connection: connection.execute(tables.steps.insert(), step))

    def read(connection: Connection) -> tuple[Any, ...]:
        task = connection.execute(select(tables.tasks).where(tables.tasks.c.id == task_id)).one()
        stored_step = connection.execute(select(tables.steps).where(tables.steps.c.id == step["id"])).one()
        null_results = connection.execute(
            select(func.count()).select_from(tables.steps).where(tables.steps.c.result.is_(None))
        ).scalar_one()
        return task, stored_step, null_results

    task, stored_step, null_results = await store.run_in_transaction(read)
    assert task.context == context
    assert task.tags == ["a", "b"]
    assert task.trace_context == {"traceparent": "00-abc-def-01"}
    assert stored_step.last_error == {"error_type": "Timeout", "attempt": 1}
    assert null_results == 1
    assert (stored_step.attempts, stored_step.fencing_token, stored_step.priority) == (0, 0, 0)


async def test_deleting_a_principal_deletes_its_credentials(store: SqlStore, rows: Rows) -> None:
    principal_id = new_id()
    now = rows.now

    def fill(connection: Connection) -> None:
        connection.execute(
            tables.principals.insert(),
            {"id": principal_id, "username": "alice", "display_name": "Alice", "kind": "HUMAN"}
            | {"create_time": now, "update_time": now},
        )
        connection.execute(
            tables.password_hashes.insert(),
            {"principal_id": principal_id, "password_hash": "$argon2id$...", "update_time": now},
        )
        connection.execute(
            tables.role_bindings.insert(),
            [
                {"principal_id": principal_id, "role": "ADMIN", "namespace": None, "create_time": now},
                {"principal_id": principal_id, "role": "VIEWER", "namespace": "billing", "create_time": now},
            ],
        )
        connection.execute(
            tables.api_keys.insert(),
            {"id": new_id(), "principal_id": principal_id, "display_name": "ci", "prefix": "bk_1234"}
            | {"key_hash": "h" * 64, "create_time": now},
        )
        connection.execute(
            tables.refresh_tokens.insert(),
            {"id": new_id(), "principal_id": principal_id, "family_id": new_id(), "token_hash": "t" * 64}
            | {"create_time": now, "expire_time": now + timedelta(days=30)},
        )

    await store.run_in_transaction(fill)
    credentials = (tables.password_hashes, tables.role_bindings, tables.api_keys, tables.refresh_tokens)
    assert [await store.run_in_transaction(count(table)) for table in credentials] == [1, 2, 1, 1]

    await store.run_in_transaction(
        lambda connection: connection.execute(tables.principals.delete().where(tables.principals.c.id == principal_id))
    )

    assert [await store.run_in_transaction(count(table)) for table in credentials] == [0, 0, 0, 0]


async def test_json_columns_round_trip_through_orjson_and_the_fallback(store: SqlStore, rows: Rows) -> None:
    """JSON columns are stored as compact orjson text; what orjson refuses (an integer past 64 bits, a key that is
    not a string) is stored by the standard library instead; every value reads back as it was written."""
    from baton.store.engine import json_text, json_value

    context = {"order": {"id": "o-1", "lines": [1, 2.5, None, True]}, "note": "ünïcode ✓"}
    task_id = await rows.task(context=context, tags=["a", "b"])
    text_of = select(cast(tables.tasks.c.context, Text)).where(tables.tasks.c.id == task_id)
    stored = await store.run_read(lambda c: c.execute(text_of).scalar_one())
    # SQLite and PostgreSQL's json type both keep the text as written.
    assert stored == '{"order":{"id":"o-1","lines":[1,2.5,null,true]},"note":"ünïcode ✓"}'
    read = await store.run_read(
        lambda c: c.execute(select(tables.tasks.c.context, tables.tasks.c.tags).where(tables.tasks.c.id == task_id))
    )
    assert read.one() == (context, ["a", "b"])
    assert json_text({"big": 2**70}) == '{"big": 1180591620717411303424}'
    assert json_value(json_text({"big": 2**70})) == {"big": 2**70}
    assert json_text({1: "x"}) == '{"1": "x"}'
