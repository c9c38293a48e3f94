"""`keyed` and `in_list` on both backends: the rows of exactly the listed keys, whatever the list holds; on SQLite,
by index and without an ephemeral index of the keys where a join can take them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Select, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection

from baton.engine import dispatch_sql, touched
from baton.store import SqlStore, tables
from baton.store.keys import BACKENDS, by_backend, in_list, keyed

NAMES = by_backend(
    lambda backend: select(tables.namespaces.c.name).where(in_list(tables.namespaces.c.name, "names", backend))
)
KEYED_NAMES = by_backend(
    lambda backend: keyed(select(tables.namespaces.c.name), tables.namespaces.c.name, "names", backend)
)


async def test_keyed_and_in_list_read_exactly_the_listed_keys(store: SqlStore, backend: str) -> None:
    odd = ['quote"d', "back\\slash", "ünï ✓", "comma,and]bracket"]
    plain = [f"ns-{i:05d}" for i in range(40_000)]  # more than SQLite's 32 766 bound variables

    def fill(connection: Connection) -> None:
        connection.execute(
            tables.namespaces.insert(),
            [{"name": name, "create_time": datetime.now(UTC)} for name in odd + plain[:50]],
        )

    await store.run_in_transaction(fill)

    for statement in (NAMES[backend], KEYED_NAMES[backend]):

        async def names(listed: list[str], statement: Select[Any] = statement) -> list[str]:
            return await store.run_read(lambda c: list(c.execute(statement, {"names": listed}).scalars()))

        assert await names([]) == []
        assert await names(["missing"]) == []
        assert sorted(await names([*odd, "missing"])) == sorted(odd)
        assert await names(["ns-00003", "ns-00003"]) == ["ns-00003"]  # once, though listed twice
        if backend == "sqlite":  # PostgreSQL's expanding IN has its own limit of bound parameters
            assert sorted(await names(plain)) == plain[:50]
    if backend == "sqlite":  # a join gives the rows in the order of the list
        listed = ["ns-00007", "ns-00002", "ns-00005"]
        rows = await store.run_read(lambda c: list(c.execute(KEYED_NAMES["sqlite"], {"names": listed}).scalars()))
        assert rows == listed


async def test_dispatch_reads_use_the_key_indexes_on_sqlite(store: SqlStore, backend: str) -> None:
    """Every statement built with keyed or in_list looks its keys up by index (EXPLAIN QUERY PLAN), scans only the
    keys themselves, and (but for the UPDATE) builds no ephemeral index of them."""
    if backend != "sqlite":
        pytest.skip("SQLite's query plans only: PostgreSQL keeps the expanding IN")
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
        scans = [step for step in plan if step.startswith("SCAN")]
        assert scans, (name, plan)
        assert all("VIRTUAL TABLE" in step for step in scans), (name, plan)  # only the keys are scanned
        searches = [step for step in plan if step.startswith("SEARCH")]
        assert searches, (name, plan)
        assert all("USING" in step and "INDEX" in step for step in searches), (name, plan)
        assert not any("lease_expiry" in step or "claim" in step for step in searches), (name, plan)
        if name != "make ready":  # an UPDATE cannot join: its keys go in an IN subquery
            assert "LIST SUBQUERY 1" not in plan, (name, plan)
        if name != "now ready":  # ordered by task and position
            assert not any("TEMP B-TREE" in step for step in plan), (name, plan)
