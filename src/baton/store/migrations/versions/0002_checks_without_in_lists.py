"""CHECK constraints on enumerated columns as OR-ed equalities instead of `IN` lists.

SQLite evaluates `state IN ('PENDING', 'RUNNING', …)` (more than two constants) by building an ephemeral index of
the list, once for every statement that writes the column: a page allocated and zeroed, then cleared again, about
2 µs a constraint a statement. The engine writes those columns in nearly every statement of its transactions
(task_events alone has four), so that was a tenth of the server's instructions a task
(scripts/bench/tasks_instructions). `state = 'PENDING' OR state = 'RUNNING' OR …` allows exactly the same values
(NULL included, for the nullable columns) and costs a few comparisons.

On SQLite the constraint text in each table's schema is rewritten in place, as SQLite documents for schema
changes that do not touch stored content (https://www.sqlite.org/lang_altertable.html, "making other kinds of
table schema changes": writable_schema, then a new schema_version), inside the migration's transaction: every
stored row satisfied the old constraint and so satisfies the new one, no table is copied (a copy would also have
to drop `tasks`, whose ON DELETE CASCADE foreign keys would take the steps and events with it). On PostgreSQL
each constraint is dropped and added again in the new form (which validates the rows once).

Revision ID: 0002_checks_without_in_lists
Revises: 0001_initial
Create Date: 2026-12-04 00:00:00
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from alembic import op
from sqlalchemy.engine import Connection

revision: str = "0002_checks_without_in_lists"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TASK_STATES = ("PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED")
_STEP_STATES = ("PENDING", "READY", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "RESOLVED_MANUALLY")
#: (table, constraint, column, allowed values), as 0001_initial made them.
_CHECKS = (
    ("tasks", "ck_tasks_state", "state", _TASK_STATES),
    ("steps", "ck_steps_state", "state", _STEP_STATES),
    ("task_events", "ck_task_events_previous_task_state", "previous_task_state", _TASK_STATES),
    ("task_events", "ck_task_events_task_state", "task_state", _TASK_STATES),
    ("task_events", "ck_task_events_previous_step_state", "previous_step_state", _STEP_STATES),
    ("task_events", "ck_task_events_step_state", "step_state", _STEP_STATES),
    ("principals", "ck_principals_kind", "kind", ("HUMAN", "SERVICE_ACCOUNT")),
    ("role_bindings", "ck_role_bindings_role", "role", ("ADMIN", "OPERATOR", "DEVELOPER", "WORKER", "VIEWER")),
    ("audit_events", "ck_audit_events_outcome", "outcome", ("ok", "failed", "denied")),
)


def _in_list(column: str, values: Sequence[str]) -> str:
    listed = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({listed})"


def _equalities(column: str, values: Sequence[str]) -> str:
    return " OR ".join(f"{column} = '{value}'" for value in values)


#: (the constraint's text before, after) for a column and its values.
Texts = Callable[[str, Sequence[str]], tuple[str, str]]


def upgrade() -> None:
    """Every enumerated CHECK constraint as OR-ed equalities."""
    _rewrite(lambda column, values: (_in_list(column, values), _equalities(column, values)))


def downgrade() -> None:
    """Back to `IN` lists."""
    _rewrite(lambda column, values: (_equalities(column, values), _in_list(column, values)))


def _rewrite(texts: Texts) -> None:
    connection: Connection = op.get_bind()
    if connection.dialect.name != "sqlite":
        for table, name, column, values in _CHECKS:
            _old, new = texts(column, values)
            op.drop_constraint(op.f(name), table, type_="check")
            op.create_check_constraint(op.f(name), table, new)
        return
    tables = tuple(dict.fromkeys(table for table, *_ in _CHECKS))
    placeholders = ", ".join("?" * len(tables))
    query = f"SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name IN ({placeholders})"  # noqa: S608
    schema: dict[str, str] = {name: sql for name, sql in connection.exec_driver_sql(query, tables)}
    for table, name, column, values in _CHECKS:
        old, new = texts(column, values)
        before = f"CONSTRAINT {name} CHECK ({old})"
        if schema[table].count(before) != 1:
            raise RuntimeError(f"{table}: constraint {name} is not {before!r}; not rewriting an unknown schema")
        schema[table] = schema[table].replace(before, f"CONSTRAINT {name} CHECK ({new})")
    version = connection.exec_driver_sql("PRAGMA schema_version").scalar_one()
    connection.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        for table, sql in schema.items():
            update = "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?"
            connection.exec_driver_sql(update, (sql, table))
        connection.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        connection.exec_driver_sql("PRAGMA writable_schema = OFF")
    # Read every rewritten table once, so that a schema SQLite cannot parse fails here, inside the transaction.
    for table in schema:
        connection.exec_driver_sql(f'SELECT * FROM "{table}" LIMIT 0').all()  # noqa: S608 - names from _CHECKS
