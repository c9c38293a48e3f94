"""executemany without SQLAlchemy's per-row work, on SQLite.

`Connection.execute(statement, rows)` builds a parameter dictionary for every row (`construct_params`) and then
runs every bind processor over it: several microseconds a row, more than SQLite takes to write the row, and the
engine's transactions move a few rows per task in every table they touch. `execute_many` compiles the statement
once per set of row keys, exactly as `Connection.execute` would (`column_keys`), keeps its positional SQL, the order
of its parameters and their bind processors, and hands the rows to the driver as tuples through
`exec_driver_sql` (so errors are wrapped and events fire as for any statement). Parameters the statement binds
itself (`values(state="COMPLETED")`) are taken from the compiled form. A statement with parameters expanded at
execution (`IN` lists) and every other backend go through `Connection.execute`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.dml import UpdateBase

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
    connection.exec_driver_sql(plan.sql, parameters)


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
    return _Plan(
        statement,
        str(compiled),
        itemgetter(*taken),
        len(taken) == 1,
        tuple(processed),
        tuple(constants),
    )
