"""SQL of the task engine: task records, the creation and cancellation transactions, reads and keyset pages.

Every function is synchronous and takes a Connection, so the engine runs a whole read or write in one hop
(`SqlStore.run_in_transaction`). Events are numbered per task from `tasks.last_event_sequence`; a transaction
that adds events bumps it once at the end, under the row lock (PostgreSQL `FOR UPDATE`, SQLite's write lock).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from baton.domain.dag import topological_order
from baton.domain.states import StepState, TaskState
from baton.engine.task_filter import TaskFilter
from baton.store.bulk import execute_many
from baton.store.tables import step_dependencies, steps, task_events, task_tags, tasks

_t = tasks.c
#: Built once: building a statement (and its cache key) per call costs more than running it.
INSERT_EVENTS = insert(task_events)


@dataclass(frozen=True, slots=True)
class StepRecord:
    """A stored step of a task; `depends_on` holds step names."""

    id: str
    name: str
    position: int
    state: StepState
    step_handler: str
    depends_on: tuple[str, ...]
    attempts: int
    max_attempts: int
    next_attempt_at: datetime | None = None
    result: dict[str, Any] | None = None
    last_error: dict[str, Any] | None = None
    worker_id: str | None = None
    lease_expire_time: datetime | None = None
    ready_time: datetime | None = None
    start_time: datetime | None = None
    complete_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """A stored task; `steps` in topological order, empty when they were not loaded."""

    id: str
    namespace: str
    handler_name: str
    handler_version: str
    state: TaskState
    context: dict[str, Any]
    tags: tuple[str, ...]
    priority: int
    correlation_id: str
    request_id: str | None
    creator: str
    request_hash: str | None
    revision: int
    create_time: datetime
    update_time: datetime
    complete_time: datetime | None
    trace_context: dict[str, str] = field(default_factory=dict)
    steps: tuple[StepRecord, ...] = ()

    @property
    def etag(self) -> str:
        """The AIP-154 etag: the revision as text."""
        return str(self.revision)


@dataclass
class EventLog:
    """Events of one task being written in this transaction, numbered after `last_sequence`."""

    task_id: str
    last_sequence: int
    actor: str
    now: datetime
    rows: list[dict[str, Any]] = field(default_factory=list)

    def task(self, previous: TaskState | None, state: TaskState, reason: str) -> None:
        """Record a task transition."""
        self._add(None, previous.value if previous is not None else None, state.value, None, None, None, reason)

    def step(self, name: str, previous: StepState, state: StepState, attempt: int, reason: str) -> None:
        """Record a step transition."""
        self._add(name, None, None, previous.value, state.value, attempt, reason)

    def _add(
        self,
        step_name: str | None,
        previous_task_state: str | None,
        task_state: str | None,
        previous_step_state: str | None,
        step_state: str | None,
        attempt: int | None,
        reason: str,
    ) -> None:
        self.last_sequence += 1
        self.rows.append(
            {
                "step_name": step_name,
                "previous_task_state": previous_task_state,
                "task_state": task_state,
                "previous_step_state": previous_step_state,
                "step_state": step_state,
                "attempt": attempt,
                "reason": reason,
                "task_id": self.task_id,
                "sequence": self.last_sequence,
                "actor": self.actor,
                "create_time": self.now,
            }
        )

    def flush(self, connection: Connection) -> None:
        """Insert the events (the caller updates `tasks.last_event_sequence`)."""
        if self.rows:
            execute_many(connection, INSERT_EVENTS, self.rows)
            self.rows.clear()


def find_by_request_id(connection: Connection, namespace: str, creator: str, request_id: str) -> Row[Any] | None:
    """The task row a caller created with `request_id` in `namespace`, or None."""
    query = select(tasks).where(_t.namespace == namespace, _t.creator == creator, _t.request_id == request_id)
    return connection.execute(query).first()


def task_row(connection: Connection, task_id: str, *, for_update: bool = False) -> Row[Any] | None:
    """A task row, locked for the transaction when `for_update` (a no-op on SQLite, which locks the database).

    The lock is FOR NO KEY UPDATE: writers of a task's steps hold a KEY SHARE lock on the task row (foreign
    key) and then lock the task; FOR UPDATE would conflict with those and deadlock."""
    query = select(tasks).where(_t.id == task_id)
    return connection.execute(query.with_for_update(key_share=True) if for_update else query).first()


def load_task(connection: Connection, task_id: str, *, with_steps: bool = True) -> TaskRecord | None:
    """A task with its steps (when `with_steps`), or None."""
    row = task_row(connection, task_id)
    if row is None:
        return None
    return task_from_row(row, load_steps(connection, task_id) if with_steps else ())


def task_from_row(row: Row[Any], step_records: Sequence[StepRecord] = ()) -> TaskRecord:
    """A TaskRecord of a tasks row."""
    return TaskRecord(
        id=row.id,
        namespace=row.namespace,
        handler_name=row.handler_name,
        handler_version=row.handler_version,
        state=TaskState(row.state),
        context=row.context,
        tags=tuple(row.tags),
        priority=row.priority,
        correlation_id=row.correlation_id,
        request_id=row.request_id,
        creator=row.creator,
        request_hash=row.request_hash,
        revision=row.revision,
        create_time=row.create_time,
        update_time=row.update_time,
        complete_time=row.complete_time,
        trace_context=dict(row.trace_context or {}),
        steps=tuple(step_records),
    )


def load_steps(connection: Connection, task_id: str) -> list[StepRecord]:
    """The steps of a task, dependencies before dependents (declaration order breaks ties)."""
    rows = connection.execute(select(steps).where(steps.c.task_id == task_id).order_by(steps.c.position)).all()
    names = {row.id: row.name for row in rows}
    depends: dict[str, list[str]] = {row.id: [] for row in rows}
    query = select(step_dependencies).where(step_dependencies.c.task_id == task_id)
    for dependency in connection.execute(query):
        depends[dependency.step_id].append(names[dependency.depends_on_step_id])
    position = {row.name: row.position for row in rows}
    records = [_step_from_row(row, sorted(depends[row.id], key=position.__getitem__)) for row in rows]
    by_name = {record.name: record for record in records}
    return [by_name[name] for name in topological_order(records)]


def _step_from_row(row: Row[Any], depends_on: list[str]) -> StepRecord:
    return StepRecord(
        id=row.id,
        name=row.name,
        position=row.position,
        state=StepState(row.state),
        step_handler=row.step_handler,
        depends_on=tuple(depends_on),
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        next_attempt_at=row.next_attempt_at,
        result=row.result,
        last_error=row.last_error,
        worker_id=row.worker_id,
        lease_expire_time=row.lease_expire_time,
        ready_time=row.ready_time,
        start_time=row.start_time,
        complete_time=row.complete_time,
    )


def cancel_steps(connection: Connection, task_id: str, events: EventLog, reason: str) -> None:
    """Cancel the PENDING and READY steps of a task, one event each; RUNNING steps are left to their leases."""
    waiting = (StepState.PENDING.value, StepState.READY.value)
    query = select(steps.c.id, steps.c.name, steps.c.state, steps.c.attempts).where(
        steps.c.task_id == task_id, steps.c.state.in_(waiting)
    )
    rows = connection.execute(query.order_by(steps.c.position)).all()
    for row in rows:
        events.step(row.name, StepState(row.state), StepState.CANCELLED, row.attempts, reason)
    if rows:
        connection.execute(
            update(steps)
            .where(steps.c.id.in_([row.id for row in rows]))
            .values(state=StepState.CANCELLED.value, complete_time=events.now, next_attempt_at=None)
        )


def mark_cancelled(connection: Connection, task_id: str, revision: int, events: EventLog) -> None:
    """Set a task CANCELLED, bump its revision and event sequence, and write the pending events."""
    events.flush(connection)
    connection.execute(
        update(tasks)
        .where(_t.id == task_id)
        .values(
            state=TaskState.CANCELLED.value,
            revision=revision + 1,
            update_time=events.now,
            complete_time=events.now,
            last_event_sequence=events.last_sequence,
        )
    )


def list_page(
    connection: Connection,
    namespace: str,
    task_filter: TaskFilter,
    after: tuple[datetime, str] | None,
    limit: int,
    with_steps: bool,
) -> tuple[list[TaskRecord], bool]:
    """Up to `limit` tasks of a namespace matching the filter, newest first, after the (create_time, id) position;
    and whether more follow."""
    query = select(tasks).where(_t.namespace == namespace, *filter_clauses(task_filter))
    if after is not None:
        time, task_id = after
        query = query.where(or_(_t.create_time < time, and_(_t.create_time == time, _t.id < task_id)))
    query = query.order_by(_t.create_time.desc(), _t.id.desc()).limit(limit + 1)
    rows = connection.execute(query).all()
    page = [task_from_row(row, load_steps(connection, row.id) if with_steps else ()) for row in rows[:limit]]
    return page, len(rows) > limit


def filter_clauses(task_filter: TaskFilter) -> list[ColumnElement[bool]]:
    """The WHERE clauses of a parsed filter."""
    clauses: list[ColumnElement[bool]] = [_t.handler_name == name for name in task_filter.handler_names]
    clauses += [_t.state == state.value for state in task_filter.states]
    for tag in task_filter.tags:
        tagged = select(task_tags.c.task_id).where(task_tags.c.tag == tag, task_tags.c.task_id == _t.id)
        clauses.append(tagged.exists())
    for operator, bound in task_filter.create_time:
        column = _t.create_time
        comparisons = {">": column > bound, ">=": column >= bound, "<": column < bound, "<=": column <= bound}
        clauses.append(comparisons[operator])
    return clauses
