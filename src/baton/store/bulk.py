"""Statements on SQLite without SQLAlchemy's per-execution and per-row work: `execute_many`, `fetch`, `run`.

`Connection.execute(statement, rows)` builds a parameter dictionary for every row (`construct_params`) and then
runs every bind processor over it: several microseconds a row, more than SQLite takes to write the row, and the
engine's transactions move a few rows per task in every table they touch. `execute_many` compiles the statement
once per set of row keys, exactly as `Connection.execute` would (`column_keys`), keeps its positional SQL, the order
of its parameters and their bind processors, and hands the rows to the driver as tuples. Parameters the statement
binds itself (`values(state="COMPLETED")`) are taken from the compiled form. A statement with parameters expanded
at execution (`IN` lists) and every other backend go through `Connection.execute`.

`fetch` and `run` do the same for one execution of the engine's constant statements (reads by a list of keys, the
claim's `UPDATE … RETURNING`), and make the rows themselves: tuples with the columns as attributes and `_mapping`,
their values through the columns' result processors, as SQLAlchemy's Rows have them.

The statements go straight to the driver's connection, its errors wrapped as SQLAlchemy wraps them (IntegrityError
and the rest; a connection that is gone is invalidated). Each `Connection.execute` or `exec_driver_sql` builds an
execution context, a cursor wrapper and a result, and finds the compiled form by walking the statement for its
cache key; in the SQLite writer thread, the serial stage of the engine, that was more work than the statements'
own: 16 % of the server's instructions a task (scripts/bench/tasks_instructions, one call at a time: 7.63 M before,
6.40 M after). When something listens for cursor events or errors (tests that hold or count statements,
instrumentation), every statement goes through SQLAlchemy, so that the listeners see it.

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
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Select
from sqlalchemy.sql.dml import Insert, Update, UpdateBase

__all__ = ["execute_many", "fetch", "run"]


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
    driver = _driver(connection)
    multi = plan.multi_row
    if multi is None or len(parameters) == 1 or (multi.key is not None and _repeats(parameters, multi.key)):
        _send(connection, driver, plan.sql, parameters, many=True)
        return
    start, left = 0, len(parameters)
    while left:
        size = min(multi.cap, 1 << (left.bit_length() - 1))
        flat = [value for fields in parameters[start : start + size] for value in fields]
        _send(connection, driver, multi.text(size), tuple(flat), many=False)
        start += size
        left -= size


def _driver(connection: Connection) -> sqlite3.Connection | None:
    """SQLite's own connection under `connection` when statements may go to it directly, that is when nothing
    listens for cursor events or errors (tests that hold or count statements, instrumentation): those see every
    statement, because then it goes through SQLAlchemy."""
    dispatch = connection.dispatch
    if dispatch.before_cursor_execute or dispatch.after_cursor_execute or connection.dialect.dispatch.handle_error:
        return None
    driver = connection.connection.driver_connection
    return driver if isinstance(driver, sqlite3.Connection) else None


def _send(connection: Connection, driver: sqlite3.Connection | None, sql: str, parameters: Any, *, many: bool) -> Any:
    """Run positional SQL on the driver (its errors wrapped as SQLAlchemy wraps them) and return the driver's
    cursor, or through `exec_driver_sql` when there is no driver to use."""
    if driver is None:
        return connection.exec_driver_sql(sql, parameters)
    try:
        return driver.executemany(sql, parameters) if many else driver.execute(sql, parameters)
    except sqlite3.Error as error:
        raise _wrapped(connection, driver, sql, parameters, many, error) from error


def _wrapped(
    connection: Connection, driver: sqlite3.Connection, sql: str, parameters: Any, many: bool, error: sqlite3.Error
) -> BaseException:
    """The driver's error as SQLAlchemy would raise it (IntegrityError, OperationalError, …), the connection
    invalidated first when the error means it is gone."""
    dialect = connection.dialect
    gone = dialect.is_disconnect(error, driver, None)  # type: ignore[arg-type]
    if gone:
        connection.invalidate(error)
    return DBAPIError.instance(
        sql, parameters, error, sqlite3.Error, connection_invalidated=gone, dialect=dialect, ismulti=many
    )


def _repeats(parameters: list[Any], key: int) -> bool:
    keys = {fields[key] for fields in parameters}
    return len(keys) != len(parameters)


def _plan(statement: UpdateBase, dialect: Dialect, keys: tuple[str, ...]) -> _Plan | None:
    return _cached(_plans, (id(statement), dialect.name, keys), lambda: _compile(statement, dialect, keys))


P = TypeVar("P")


def _cached(plans: dict[Any, P | None], key: Any, make: Callable[[], P | None]) -> P | None:
    """The plan kept under `key` (None too: a statement that goes through SQLAlchemy), made and kept on first use;
    at most MAX_PLANS are kept (statements are module constants, so a handful is the norm)."""
    if key in plans:
        return plans[key]
    plan = make()
    with _lock:
        if len(plans) >= MAX_PLANS:
            plans.clear()
        plans[key] = plan
    return plan


def _compile(statement: UpdateBase, dialect: Dialect, keys: tuple[str, ...]) -> _Plan | None:
    bound = _bound(statement, dialect, keys)
    if bound is None or not bound.names:
        return None
    return _Plan(
        statement,
        bound.sql,
        itemgetter(*bound.names),
        len(bound.names) == 1,
        bound.processed,
        bound.constants,
        _multi_row(statement, bound.sql, bound.width),
    )


@dataclass(frozen=True, slots=True)
class _Bound:
    """A statement compiled for SQLite with `keys` given: its SQL, the given parameters in the order it binds
    them, the positions among those that need a bind processor, and the constants it binds itself with their
    positions in the full parameter list."""

    compiled: Any
    sql: str
    names: tuple[str, ...]
    processed: tuple[tuple[int, Callable[[Any], Any]], ...]
    constants: tuple[tuple[int, Any], ...]
    width: int  # parameters in all


def _bound(statement: Any, dialect: Dialect, keys: tuple[str, ...]) -> _Bound | None:
    """How `statement` binds its parameters, compiled exactly as `Connection.execute` would compile it for these
    keys (`column_keys`); None when SQLAlchemy must run it (parameters expanded at execution, or one neither given
    nor fixed by the statement, which SQLAlchemy reports)."""
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    positions = compiled.positiontup
    if not compiled.positional or positions is None or compiled.literal_execute_params or compiled.post_compile_params:
        return None
    known = set(keys)
    names: list[str] = []
    processed: list[tuple[int, Callable[[Any], Any]]] = []
    constants: list[tuple[int, Any]] = []
    for position, name in enumerate(positions):
        bind = compiled.binds[name]
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if name in known:
            if processor is not None:
                processed.append((len(names), processor))
            names.append(name)
        elif bind.callable is None and not bind.required:
            value = bind.effective_value
            constants.append((position, value if processor is None else processor(value)))
        else:
            return None
    return _Bound(compiled, str(compiled), tuple(names), tuple(processed), tuple(constants), len(positions))


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


# -- statements with parameters and rows, run on SQLite's driver ----------------------------------------------------


class _DirectRow(tuple):  # type: ignore[type-arg]
    """A row read on SQLite's driver: a tuple with its columns as attributes (the class made per statement adds
    them) and `_mapping`, as SQLAlchemy's Row has."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    @property
    def _mapping(self) -> dict[str, Any]:
        return dict(zip(self._fields, self, strict=True))


@dataclass(frozen=True, slots=True)
class _Direct:
    """A statement compiled once for SQLite with its parameter names in order, their bind processors, the
    constants it binds itself, and how its rows are made (their class and the result processors by position)."""

    statement: Any  # held so that the id() keying the plan stays this statement's
    sql: str
    names: tuple[str, ...]
    processed: tuple[tuple[int, Callable[[Any], Any]], ...]
    constants: tuple[tuple[int, Any], ...]
    row_type: type[_DirectRow] | None  # None: the statement returns no rows
    results: tuple[tuple[int, Callable[[Any], Any]], ...]


_directs: dict[tuple[int, tuple[str, ...]], _Direct | None] = {}
_new_row = tuple.__new__


def fetch(connection: Connection, statement: Any, parameters: dict[str, Any]) -> list[Any]:
    """The rows of `statement` (a SELECT, or an INSERT, UPDATE or DELETE with RETURNING) run with `parameters`,
    as `connection.execute(statement, parameters).all()` gives them: rows with the columns as attributes and
    `_mapping`, their values through the column types' result processors.

    For the engine's statements, built once at import: on SQLite, when nothing listens for cursor events, the
    statement is compiled once (with SQLAlchemy, for its SQL, parameter order and processors) and run on the
    driver's connection, which skips the execution context, cursor wrapper and result SQLAlchemy builds for every
    execution, and the cache-key walk that finds its compiled form. Elsewhere it is `Connection.execute`."""
    driver = _driver(connection)
    plan = None if driver is None else _direct(connection, statement, parameters)
    if driver is None or plan is None:
        return list(connection.execute(statement, parameters).all())
    raw = _run_direct(connection, plan, driver, parameters)
    row_type, results = plan.row_type, plan.results
    if row_type is None:
        return []
    if not results:
        return [_new_row(row_type, values) for values in raw]
    rows = []
    for values in raw:
        fields = list(values)
        for position, processor in results:
            fields[position] = processor(fields[position])
        rows.append(_new_row(row_type, fields))
    return rows


def run(connection: Connection, statement: Any, parameters: dict[str, Any]) -> None:
    """Run an INSERT, UPDATE or DELETE once with `parameters`, as `connection.execute(statement, parameters)`
    does (on SQLite's driver like `fetch`)."""
    driver = _driver(connection)
    plan = None if driver is None else _direct(connection, statement, parameters)
    if driver is None or plan is None:
        connection.execute(statement, parameters)
        return
    _run_direct(connection, plan, driver, parameters)


def _run_direct(connection: Connection, plan: _Direct, driver: sqlite3.Connection, parameters: dict[str, Any]) -> Any:
    values: list[Any] = [parameters[name] for name in plan.names]
    for position, processor in plan.processed:
        values[position] = processor(values[position])
    for position, constant in plan.constants:
        values.insert(position, constant)
    cursor = _send(connection, driver, plan.sql, values, many=False)
    return cursor.fetchall() if plan.row_type is not None else ()


def _direct(connection: Connection, statement: Any, parameters: dict[str, Any]) -> _Direct | None:
    """The plan to run `statement` on SQLite's driver, or None to run it through SQLAlchemy."""
    keys = tuple(parameters)
    return _cached(_directs, (id(statement), keys), lambda: _compile_direct(statement, connection.dialect, keys))


def _compile_direct(statement: Any, dialect: Dialect, keys: tuple[str, ...]) -> _Direct | None:
    bound = _bound(statement, dialect, keys)
    if bound is None:
        return None
    compiled = bound.compiled
    row_type: type[_DirectRow] | None = None
    results: list[tuple[int, Callable[[Any], Any]]] = []
    returns = isinstance(statement, Select) or (isinstance(statement, UpdateBase) and statement._returning)
    if returns:
        columns = list(statement.exported_columns)
        labels = tuple(column.key for column in columns)
        # The compiled statement's own result columns must be these, in this order, under these names.
        if [entry[0] for entry in compiled._result_columns] != list(labels) or len(set(labels)) != len(labels):
            return None
        if not all(label.isidentifier() and not label.startswith("_") for label in labels):
            return None
        for position, column in enumerate(columns):
            processor = column.type.dialect_impl(dialect).result_processor(dialect, None)
            if processor is not None:
                results.append((position, processor))
        row_type = type("Row", (_DirectRow,), {"__slots__": (), "_fields": labels, **_getters(labels)})
    return _Direct(statement, bound.sql, bound.names, bound.processed, bound.constants, row_type, tuple(results))


def _getters(labels: tuple[str, ...]) -> dict[str, Any]:
    return {label: property(itemgetter(position)) for position, label in enumerate(labels)}
