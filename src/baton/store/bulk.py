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
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.dml import UpdateBase

__all__ = ["execute_many"]

_Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Plan:
    """A statement compiled for one set of row keys: its SQL and, per positional parameter, where its value
    comes from (a row key, or a constant bound by the statement) and its bind processor."""

    statement: UpdateBase  # held so that the id() keying the plan stays this statement's
    sql: str
    keys: tuple[str | None, ...]
    constants: tuple[Any, ...]
    processors: tuple[_Processor, ...]


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
    fields = tuple(zip(plan.keys, plan.constants, plan.processors, strict=True))
    parameters = [
        tuple(
            (row[key] if key is not None else constant)
            if processor is None
            else processor(row[key] if key is not None else constant)
            for key, constant, processor in fields
        )
        for row in rows
    ]
    connection.exec_driver_sql(plan.sql, parameters)


def _plan(statement: UpdateBase, dialect: Dialect, keys: tuple[str, ...]) -> _Plan | None:
    cache_key = (id(statement), dialect.name, keys)
    try:
        return _plans[cache_key]
    except KeyError:
        pass
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
    sources: list[str | None] = []
    constants: list[Any] = []
    processors: list[_Processor] = []
    for name in positions:
        bind = compiled.binds[name]
        if name in known:
            sources.append(name)
            constants.append(None)
        elif bind.callable is None and not bind.required:
            sources.append(None)
            constants.append(bind.effective_value)
        else:  # a parameter the rows do not carry and the statement does not fix: let SQLAlchemy say so
            return None
        processors.append(bind.type.dialect_impl(dialect).bind_processor(dialect))
    return _Plan(statement, str(compiled), tuple(sources), tuple(constants), tuple(processors))
