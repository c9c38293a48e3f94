"""`in_list` on both backends: the rows of exactly the listed keys, whatever the list holds; on SQLite, by index."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection

from baton.engine import dispatch_sql, touched
from baton.store import SqlStore, tables
from baton.store.keys import BACKENDS, by_backend, in_list

NAMES = by_backend(
    lambda backend: (
        select(tables.namespaces.c.name)
        .where(in_list(tables.namespaces.c.name, "names", backend))
        .order_by(tables.namespaces.c.name)
    )
)


async def test_in_list_reads_exactly_the_listed_keys(store: SqlStore, backend: str) -> None:
    odd = ['quote"d', "back\\slash", "ünï ✓", "comma,and]bracket"]
    plain = [f"ns-{i:05d}" for i in range(40_000)]  # more than SQLite's 32 766 bound variables

    def fill(connection: Connection) -> None:
        connection.execute(
            tables.namespaces.insert(),
            [{"name": name, "create_time": datetime.now(UTC)} for name in odd + plain[:50]],
        )

    await store.run_in_transaction(fill)

    async def names(listed: list[str]) -> list[str]:
        statement = NAMES[backend]
        return await store.run_read(lambda c: list(c.execute(statement, {"names": listed}).scalars()))

    assert await names([]) == []
    assert await names(["missing"]) == []
    assert sorted(await names([*odd, "missing"])) == sorted(odd)  # the database collates in its own order
    assert await names(["ns-00003", "ns-00003"]) == ["ns-00003"]
    if backend == "sqlite":  # PostgreSQL's expanding IN has its own limit of bound parameters
        assert await names(plain) == plain[:50]


async def test_dispatch_reads_use_the_key_indexes_on_sqlite(store: SqlStore, backend: str) -> None:
    """Every statement built with in_list looks its keys up by index (EXPLAIN QUERY PLAN), including the read of
    steps now ready, whose state condition the planner would otherwise have preferred."""
    if backend != "sqlite":
        return
    statements = {
        "tasks by id": touched._TASKS_BY_ID,
        "tasks for leases": touched._TASKS_FOR_LEASES,
        "steps by id": touched._STEPS_BY_ID,
        "dependents": touched._DEPENDENTS,
        "now ready": touched._NOW_READY,
        "make ready": touched._MAKE_READY,
        "step states": touched._STEP_STATES,
        "dependency results": dispatch_sql._DEPENDENCY_RESULTS,
    }
    assert all(set(built) == set(BACKENDS) for built in statements.values())

    def plans(connection: Connection) -> dict[str, list[str]]:
        found = {}
        for name, built in statements.items():
            sql = str(built["sqlite"].compile(dialect=sqlite.dialect()))
            parameters = ['["a", "b"]'] + [None] * (sql.count("?") - 1)
            found[name] = [row[3] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, tuple(parameters))]
        return found

    for name, plan in (await store.run_read(plans)).items():
        assert plan[0].startswith("SEARCH"), (name, plan)
        assert "lease_expiry" not in plan[0], (name, plan)
        assert "claim" not in plan[0], (name, plan)
        assert any("json_each" in step for step in plan), (name, plan)
