"""SQL of dispatch: the atomic claim of READY steps, the leases built from it, worker presence and lease expiry.

A claim batch is one statement: `UPDATE steps SET state='RUNNING', … WHERE id IN (SELECT … LIMIT n) RETURNING …`.
On SQLite the write transaction (BEGIN IMMEDIATE) serialises claimers; on PostgreSQL the inner SELECT takes the
rows `FOR UPDATE SKIP LOCKED`, so concurrent claimers pass each other by. Every function is synchronous and takes
a Connection, to run inside `SqlStore.run_in_transaction`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Integer, Row, Select, Update, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from baton.domain.states import StepState, TaskState
from baton.engine.outcomes import lease_seconds, lease_timeout
from baton.engine.task_sql import EventLog
from baton.engine.touched import Touched
from baton.store.bulk import execute_many, fetch
from baton.store.keys import by_backend, in_list, keys
from baton.store.tables import step_dependencies, steps, workers

_S = steps.c


@dataclass(frozen=True, slots=True)
class Lease:
    """A step leased to a worker for one attempt, with everything the worker needs to run it."""

    step_id: str
    fencing_token: int
    task_id: str
    step_name: str
    step_handler: str
    namespace: str
    handler_name: str
    handler_version: str
    attempt: int
    max_attempts: int
    context: dict[str, Any]
    dependency_results: dict[str, dict[str, Any]]
    lease_expire_time: datetime
    lease_timeout: float
    correlation_id: str
    request_id: str
    trace_context: dict[str, str]
    schedule_time: datetime | None
    priority: int = 0


def claim(
    touched: Touched,
    backend: str,
    namespace: str,
    step_handlers: Sequence[str],
    limit: int,
    default_timeout: float,
    new_tasks: frozenset[str] = frozenset(),
) -> list[Lease]:
    """Lease up to `limit` READY steps due by now, highest priority first, then the longest ready.

    `new_tasks`: tasks created in this transaction, whose READY steps have no dependencies (no results to read)."""
    connection, now = touched.connection, touched.now
    parameters = {
        "in_namespace": namespace,
        **_handler_parameters(step_handlers),
        "due": now,
        "limit": limit,
        "leased_to": touched.actor,
        "started_at": now,
        "default_expiry": now + timedelta(seconds=default_timeout),
    }
    claimed = fetch(connection, _claim_statement(backend, len(step_handlers)), parameters)
    if not claimed:
        return []
    # The claim set every lease to expire after the default timeout; steps with a timeout of their own are fixed up.
    expiry = {row.id: now + timedelta(seconds=lease_timeout(row, default_timeout)) for row in claimed}
    own = [{"step_id": step_id, "expire": at} for step_id, at in expiry.items() if at != parameters["default_expiry"]]
    if own:
        execute_many(connection, _SET_EXPIRY, own)
    touched.load_tasks((row.task_id for row in claimed), for_leases=True)
    with_dependencies = [row.id for row in claimed if row.task_id not in new_tasks]
    results = _dependency_results(connection, with_dependencies) if with_dependencies else {}
    leases = []
    for row in sorted(claimed, key=lambda r: (-r.priority, r.ready_time or now, r.id)):
        task, events = touched.task(row.task_id)
        events.step(row.name, StepState.READY, StepState.RUNNING, row.attempts, f"leased to {touched.actor}")
        timeout = lease_timeout(row, default_timeout)
        leases.append(_lease(row._mapping, task._mapping, expiry[row.id], timeout, results.get(row.id, {})))
    touched.settle("a step started", only_claims=True)
    return leases


def has_backlog(connection: Connection, namespace: str, step_handlers: Sequence[str], now: datetime) -> bool:
    """Whether any step of these handlers is READY and due: steps older than a transaction's own new ones."""
    parameters = {"in_namespace": namespace, **_handler_parameters(step_handlers), "due": now}
    return connection.execute(_backlog_statement(len(step_handlers)), parameters).first() is not None


def lease_new_step(
    step: dict[str, Any], task: dict[str, Any], events: EventLog, worker_id: str, now: datetime, default_timeout: float
) -> Lease:
    """Lease a READY step of a task not inserted yet by writing its row RUNNING in the first place: the row and
    the events become what `claim` would make of them after the insert (attempt 1, fencing token 1)."""
    timeout = lease_seconds(step["lease_timeout_seconds"], default_timeout)
    expire = now + timedelta(seconds=timeout)
    step.update(
        state=StepState.RUNNING.value,
        attempts=step["attempts"] + 1,
        fencing_token=step["fencing_token"] + 1,
        worker_id=worker_id,
        start_time=now,
        lease_expire_time=expire,
    )
    events.step(step["name"], StepState.READY, StepState.RUNNING, step["attempts"], f"leased to {worker_id}")
    return _lease(step, task, expire, timeout, {})


def _lease(
    step: Mapping[Any, Any],
    task: Mapping[Any, Any],
    expire: datetime,
    timeout: float,
    dependency_results: dict[str, dict[str, Any]],
) -> Lease:
    """The lease of a step row just made RUNNING, with what the worker needs from its task's row."""
    return Lease(
        step_id=step["id"],
        fencing_token=step["fencing_token"],
        task_id=step["task_id"],
        step_name=step["name"],
        step_handler=step["step_handler"],
        namespace=step["namespace"],
        handler_name=task["handler_name"],
        handler_version=task["handler_version"],
        attempt=step["attempts"],
        max_attempts=step["max_attempts"],
        context=dict(task["context"] or {}),
        dependency_results=dependency_results,
        lease_expire_time=expire,
        lease_timeout=timeout,
        correlation_id=task["correlation_id"],
        request_id=task["request_id"] or "",
        trace_context=dict(task["trace_context"] or {}),
        schedule_time=step["ready_time"],
        priority=step["priority"],
    )


def start_new_task(task: dict[str, Any], events: EventLog) -> None:
    """A task not inserted yet whose steps were just leased is RUNNING, as settling the claim would make it."""
    if task["state"] == TaskState.PENDING.value:
        task["state"] = TaskState.RUNNING.value
        events.task(TaskState.PENDING, TaskState.RUNNING, "a step started")


def _ready_and_due(columns: Any, handler_count: int) -> tuple[ColumnElement[bool], ...]:
    """READY steps of the namespace and step handlers bound at execution (`_handler_parameters`), due by then.

    One bound parameter per step handler rather than an expanding IN: SQLAlchemy renders an expanding parameter
    into the SQL text at every execution, which cost more than the rest of a claim."""
    return (
        columns.namespace == bindparam("in_namespace"),
        columns.step_handler.in_([bindparam(f"step_handler_{i}") for i in range(handler_count)]),
        columns.state == StepState.READY.value,
        columns.next_attempt_at <= bindparam("due"),
    )


def _handler_parameters(step_handlers: Sequence[str]) -> dict[str, str]:
    return {f"step_handler_{i}": handler for i, handler in enumerate(step_handlers)}


@cache
def _backlog_statement(handler_count: int) -> Select[tuple[str]]:
    return select(_S.id).where(*_ready_and_due(_S, handler_count)).limit(1)


@cache
def _claim_statement(backend: str, handler_count: int) -> Update:
    """The claim batch, built once per backend and number of step handlers, its values bound at execution."""
    candidate = steps.alias("candidate")
    pick = (
        select(candidate.c.id)
        .where(*_ready_and_due(candidate.c, handler_count))
        .order_by(candidate.c.priority.desc(), candidate.c.ready_time, candidate.c.id)
        .limit(bindparam("limit", type_=Integer))
    )
    statement = update(steps)
    if backend == "postgresql":
        # A materialised CTE: the locked pick runs once (an IN-subquery may be rescanned, past its LIMIT).
        picked = pick.with_for_update(skip_locked=True).cte("picked").prefix_with("MATERIALIZED")
        statement = statement.where(_S.id == picked.c.id)
    else:
        statement = statement.where(_S.id.in_(pick))
    return (
        statement.where(_S.state == StepState.READY.value)
        .values(
            state=StepState.RUNNING.value,
            attempts=_S.attempts + 1,
            fencing_token=_S.fencing_token + 1,
            worker_id=bindparam("leased_to"),
            start_time=bindparam("started_at"),
            lease_expire_time=bindparam("default_expiry", type_=_S.lease_expire_time.type),
        )
        .returning(*_CLAIMED)
    )


#: What a claim reads back: what a lease and its event need (not the step's result or retry policy, whose JSON
#: would be decoded for nothing).
_CLAIMED = (
    _S.id,
    _S.task_id,
    _S.namespace,
    _S.name,
    _S.step_handler,
    _S.attempts,
    _S.max_attempts,
    _S.fencing_token,
    _S.priority,
    _S.ready_time,
    _S.lease_timeout_seconds,
)


_SET_EXPIRY = update(steps).where(_S.id == bindparam("step_id")).values(lease_expire_time=bindparam("expire"))


_dependency = steps.alias("dependency")


def _dependency_results_statement(backend: str) -> Select[Any]:
    columns = (step_dependencies.c.step_id, _dependency.c.name, _dependency.c.result)
    on_dependency = _dependency.c.id == step_dependencies.c.depends_on_step_id
    if backend == "sqlite":
        listed = keys("step_ids")
        joined = listed.join(step_dependencies, step_dependencies.c.step_id == listed.c.value)
        return select(*columns).select_from(joined.join(_dependency, on_dependency))
    return (
        select(*columns)
        .join(_dependency, on_dependency)
        .where(in_list(step_dependencies.c.step_id, "step_ids", backend))
    )


_DEPENDENCY_RESULTS = by_backend(_dependency_results_statement)

_SOONEST_ATTEMPT = select(func.min(_S.next_attempt_at)).where(
    _S.namespace == bindparam("in_namespace"),
    _S.step_handler.in_(bindparam("in_step_handlers", expanding=True)),
    _S.state == StepState.READY.value,
    _S.next_attempt_at > bindparam("after", type_=_S.next_attempt_at.type),
)


def _dependency_results(connection: Connection, step_ids: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    results: dict[str, dict[str, dict[str, Any]]] = {}
    statement = _DEPENDENCY_RESULTS[connection.dialect.name]
    for step_id, name, result in fetch(connection, statement, {"step_ids": step_ids}):
        results.setdefault(step_id, {})[name] = dict(result or {})
    return results


def soonest_attempt(
    connection: Connection, namespace: str, step_handlers: Sequence[str], now: datetime
) -> datetime | None:
    """The earliest `next_attempt_at` still in the future among READY steps of these step handlers."""
    parameters = {"in_namespace": namespace, "in_step_handlers": list(step_handlers), "after": now}
    found = fetch(connection, _SOONEST_ATTEMPT, parameters)
    value: datetime | None = found[0][0] if found else None
    return value


def seen_worker(
    connection: Connection, backend: str, namespace: str, worker_id: str, step_handlers: Sequence[str], now: datetime
) -> None:
    """Record that a worker polled (GetStatus counts the recently seen ones)."""
    dialect_insert = postgresql.insert if backend == "postgresql" else sqlite.insert
    statement = dialect_insert(workers).values(
        namespace=namespace,
        worker_id=worker_id,
        step_handlers=sorted(step_handlers),
        first_seen_time=now,
        last_seen_time=now,
    )
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["namespace", "worker_id"],
            set_={"step_handlers": statement.excluded.step_handlers, "last_seen_time": now},
        )
    )


def heard_from_worker(connection: Connection, worker_id: str, now: datetime) -> None:
    """Record that a worker heartbeated, in every namespace it polls."""
    connection.execute(update(workers).where(workers.c.worker_id == worker_id).values(last_seen_time=now))


def expired_leases(connection: Connection, backend: str, now: datetime, limit: int = 500) -> list[Row[Any]]:
    """RUNNING steps whose lease expired by `now` (locked, skipping those another sweeper holds)."""
    query = (
        select(steps)
        .where(_S.state == StepState.RUNNING.value, _S.lease_expire_time <= now)
        .order_by(_S.lease_expire_time)
        .limit(limit)
    )
    if backend == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(connection.execute(query).all())


def next_expiry(connection: Connection) -> datetime | None:
    """The earliest lease expiry among RUNNING steps."""
    query = select(func.min(_S.lease_expire_time)).where(_S.state == StepState.RUNNING.value)
    value: datetime | None = connection.execute(query).scalar()
    return value
