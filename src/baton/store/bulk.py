"""executemany without SQLAlchemy's per-row work, on SQLite.

`Connection.execute(statement, rows)` builds a parameter dictionary for every row (`construct_params`) and then
runs every bind processor over it: several microseconds a row, more than SQLite takes to write the row, and the
engine's transactions move a few rows per task in every table they touch. `execute_many` compiles the statement
once per set of row keys, exactly as `Connection.execute` would (`column_keys`), keeps its positional SQL, the order
of its parameters and their bind processors, and hands the rows to the driver as tuples through
`exec_driver_sql` (so errors are wrapped and events fire as for any statement). Parameters the statement binds
itself (`values(state="COMPLETED")`) are taken from the compiled form. A statement with parameters expanded at
execution (`IN` lists) and every other backend go through `Connection.execute`.

On SQLite the rows of an INSERT go further, as multi-row `VALUES (…), (…)` statements, and so do those of an UPDATE of
one row by its primary key (`UPDATE t SET … FROM (VALUES (…), (…)) AS v WHERE t.id = v.columnN`, when no two rows
name the same key; else one execution per row keeps the sequential meaning). The driver releases the GIL around
every `sqlite3_step`, once per row of an executemany, and taking it back from a busy event loop costs a thread
switch each time: with the loop busy, a row cost several times its own SQLite work in GIL hand-offs, where one
step per chunk does not. Chunks are powers of two (at most MAX_ROWS rows and MAX_VARIABLES parameters), so a
statement has a handful of texts, each prepared once in the driver's statement cache.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.dml import Insert, Update, UpdateBase

__all__ = ["execute_many"]


@dataclass(frozen=True, slots=True)
class _Plan:
    """A statement compiled for one set of row keys: its SQL, a getter of the row values it binds (in its
    parameter order), the positions whose values need a bind processor, and the constants the statement binds
    itself with their positions."""

    statement: UpdateBase  # held so that the id() keying the plan stays this statement's
    sql: str
    values: Callable[[dict[str, Any]], Any]
    single: bool  # `values` returns one value rather than a tuple
    processed: tuple[tuple[int, Callable[[Any], Any]], ...]
    constants: tuple[tuple[int, Any], ...]
    multi_row: _MultiRow | None = None


@dataclass(frozen=True, slots=True)
class _MultiRow:
    """How several rows go in one statement: `prefix`, then `row` once per row (comma-separated), then `suffix`;
    `key` is the position of an UPDATE's primary-key parameter (rows must not repeat it)."""

    prefix: str
    row: str
    suffix: str
    cap: int  # rows per statement at most: a power of two
    key: int | None
    texts: dict[int, str]  # the SQL by number of rows, made on first use

    def text(self, size: int) -> str:
        sql = self.texts.get(size)
        if sql is None:
            sql = self.texts.setdefault(size, f"{self.prefix}{', '.join([self.row] * size)}{self.suffix}")
        return sql


#: Rows in one multi-row INSERT at most, and parameters (SQLite's default limit since 3.32 is 32766).
MAX_ROWS = 256
MAX_VARIABLES = 32766


_plans: dict[tuple[int, str, tuple[str, ...]], _Plan | None] = {}
_lock = threading.Lock()
#: Plans kept at most (statements are module constants, so a handful is the norm; this only bounds a misuse).
MAX_PLANS = 256


def execute_many(connection: Connection, statement: UpdateBase, rows: Sequence[dict[str, Any]]) -> None:
    """Run an INSERT, UPDATE or DELETE once per row (every row with the first row's keys), as
    `connection.execute(statement, rows)` would."""
    if not rows:
        return
    dialect = connection.dialect
    plan = _plan(statement, dialect, tuple(rows[0])) if dialect.name == "sqlite" else None
    if plan is None:
        connection.execute(statement, list(rows))
        return
    values, single, processed, constants = plan.values, plan.single, plan.processed, plan.constants
    if not processed and not constants:
        parameters: list[Any] = [(values(row),) if single else values(row) for row in rows]
    else:
        parameters = []
        for row in rows:
            fields = [values(row)] if single else list(values(row))
            for position, processor in processed:
                fields[position] = processor(fields[position])
            for position, constant in constants:
                fields.insert(position, constant)
            parameters.append(tuple(fields))
    multi = plan.multi_row
    if multi is None or len(parameters) == 1 or (multi.key is not None and _repeats(parameters, multi.key)):
        connection.exec_driver_sql(plan.sql, parameters)
        return
    start, left = 0, len(parameters)
    while left:
        size = min(multi.cap, 1 << (left.bit_length() - 1))
        flat = [value for fields in parameters[start : start + size] for value in fields]
        connection.exec_driver_sql(multi.text(size), tuple(flat))
        start += size
        left -= size


def _repeats(parameters: list[Any], key: int) -> bool:
    keys = {fields[key] for fields in parameters}
    return len(keys) != len(parameters)


def _plan(statement: UpdateBase, dialect: Dialect, keys: tuple[str, ...]) -> _Plan | None:
    cache_key = (id(statement), dialect.name, keys)
    if cache_key in _plans:  # None too: a statement that goes through Connection.execute
        return _plans[cache_key]
    plan = _compile(statement, dialect, keys)
    with _lock:
        if len(_plans) >= MAX_PLANS:
            _plans.clear()
        _plans[cache_key] = plan
    return plan


def _compile(statement: UpdateBase, dialect: Dialect, keys: tuple[str, ...]) -> _Plan | None:
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    positions = compiled.positiontup
    if not compiled.positional or positions is None or compiled.literal_execute_params or compiled.post_compile_params:
        return None
    known = set(keys)
    taken: list[str] = []
    processed: list[tuple[int, Callable[[Any], Any]]] = []
    constants: list[tuple[int, Any]] = []
    for position, name in enumerate(positions):
        bind = compiled.binds[name]
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if name in known:
            if processor is not None:
                processed.append((len(taken), processor))
            taken.append(name)
        elif bind.callable is None and not bind.required:
            value = bind.effective_value
            constants.append((position, value if processor is None else processor(value)))
        else:  # a parameter the rows do not carry and the statement does not fix: let SQLAlchemy say so
            return None
    if not taken:
        return None
    sql = str(compiled)
    return _Plan(
        statement,
        sql,
        itemgetter(*taken),
        len(taken) == 1,
        tuple(processed),
        tuple(constants),
        _multi_row(statement, sql, len(positions)),
    )


def _multi_row(statement: UpdateBase, sql: str, width: int) -> _MultiRow | None:
    """How to write several rows in one statement: a plain INSERT whose SQL ends in one row of placeholders, or an
    UPDATE of one row by its primary key, every parameter a placeholder; else None."""
    cap = min(MAX_ROWS, MAX_VARIABLES // width)
    if cap < 2 or sql.count("?") != width or statement._returning:
        return None
    cap = 1 << (cap.bit_length() - 1)
    row = f"({', '.join(['?'] * width)})"
    if isinstance(statement, Insert):
        head, values, tail = sql.rpartition(" VALUES ")
        if statement._post_values_clause is not None or not values or tail != row or " VALUES " in head:
            return None
        return _MultiRow(f"{head} VALUES ", row, "", cap, None, {})
    if isinstance(statement, Update):
        match = _UPDATE_BY_KEY.fullmatch(sql)
        primary_key = [column.name for column in statement.table.primary_key]
        if match is None or primary_key != [match["key"]]:
            return None
        # Every placeholder of the SET clause becomes the VALUES row's column in the same position; the key is last.
        # The SQL is the compiled statement's own text (no caller input), rearranged.
        placeholders = iter(range(1, width))
        assignments = re.sub(r"\?", lambda _: f"v.column{next(placeholders)}", match["set"])
        table, key = match["table"], match["key"]
        prefix = f"UPDATE {table} SET {assignments} FROM (VALUES "  # noqa: S608
        return _MultiRow(prefix, row, f") AS v WHERE {table}.{key} = v.column{width}", cap, width - 1, {})
    return None


#: An UPDATE of one row by one key column: `UPDATE t SET a=?, b=(t.b + ?) WHERE t.id = ?` (no subquery).
_UPDATE_BY_KEY = re.compile(
    r"UPDATE (?P<table>\w+) SET (?P<set>(?:(?!WHERE|SELECT|FROM).)+) WHERE (?P=table)\.(?P<key>\w+) = \?"
)
