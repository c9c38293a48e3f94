"""What one write transaction of the dispatcher touches, batched: the rows it reads, the writes it defers, the tasks
it must settle.

Claims and outcomes come many leases to a call, and on SQLAlchemy every statement costs far more than the row it
moves, so a transaction reads its steps and tasks with one `IN` query each, defers the completions of steps to one
executemany, releases the dependents of every completed step with a handful of statements, and settles all its
tasks at the end: one query for their steps' states, one insert of all events, one executemany of task updates.
Rows are locked as they are read (PostgreSQL `FOR NO KEY UPDATE`, tasks in id order; SQLite's write lock covers
the transaction). Statements are built once, at import, with their values bound at execution: building a
statement (aliases above all) costs more than running it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, bindparam, select, update
from sqlalchemy.engine import Connection

from baton.domain.states import StepState, TaskState, derive_task_state, transition_task
from baton.engine.metrics import TASKS_FINISHED
from baton.engine.notify import Notifier
from baton.engine.task_sql import INSERT_EVENTS, EventLog
from baton.store.bulk import execute_many, fetch, run
from baton.store.keys import by_backend, in_list, keyed
from baton.store.tables import step_dependencies, steps, tasks

_S = steps.c
_T = tasks.c

_COMPLETE_STEP = (
    update(steps)
    .where(_S.id == bindparam("step_id"))
    .values(
        state=StepState.COMPLETED.value,
        result=bindparam("step_result", type_=_S.result.type),
        complete_time=bindparam("completed_at"),
        lease_expire_time=None,
    )
)
_DEPENDENCY_DONE = (
    update(steps)
    .where(_S.id == bindparam("step_id"))
    .values(remaining_dependencies=_S.remaining_dependencies - bindparam("done"))
)
#: What settling and the outcomes read of a task: not its context, tags or trace context, JSON (up to the context's
#: 256 KiB) that only a lease needs.
_TASK_COLUMNS = [column for column in tasks.c if column.name not in ("context", "tags", "trace_context")]


def _by_id(backend: str, statement: Select[Any], column: Any, name: str) -> Select[Any]:
    """Rows by a list of IDs, locked (PostgreSQL, in ID order; SQLite's write lock covers the transaction, and the
    rows come in the order of the list, which the callers sort)."""
    statement = keyed(statement, column, name, backend)
    return statement if backend == "sqlite" else statement.order_by(column).with_for_update(key_share=True)


_TASKS_BY_ID = by_backend(lambda backend: _by_id(backend, select(*_TASK_COLUMNS), _T.id, "task_ids"))
#: The same with what a lease carries of its task (`load_tasks(..., for_leases=True)`).
_TASKS_FOR_LEASES = by_backend(
    lambda backend: _by_id(backend, select(*_TASK_COLUMNS, _T.context, _T.trace_context), _T.id, "task_ids")
)
#: What the outcomes read of a step: not its result or last error (JSON they never look at).
_STEPS_BY_ID = by_backend(
    lambda backend: _by_id(
        backend,
        select(*[column for column in steps.c if column.name not in ("result", "last_error")]),
        _S.id,
        "step_ids",
    )
)
_DEPENDENTS = by_backend(
    lambda backend: keyed(
        select(step_dependencies.c.step_id), step_dependencies.c.depends_on_step_id, "step_ids", backend
    )
)
_NOW_READY = by_backend(
    lambda backend: (
        keyed(
            select(_S.id, _S.task_id, _S.name, _S.namespace, _S.step_handler, _S.attempts),
            _S.id,
            "step_ids",
            backend,
        )
        .where(_S.remaining_dependencies <= 0, _S.state == StepState.PENDING.value)
        .order_by(_S.task_id, _S.position)
    )
)
_MAKE_READY = by_backend(
    lambda backend: (
        update(steps)
        .where(in_list(_S.id, "step_ids", backend))
        .values(
            state=StepState.READY.value,
            ready_time=bindparam("ready_at", type_=_S.ready_time.type),
            next_attempt_at=bindparam("ready_at", type_=_S.next_attempt_at.type),
        )
    )
)
_STEP_STATES = by_backend(lambda backend: keyed(select(_S.task_id, _S.state), _S.task_id, "task_ids", backend))
_INSERT_EVENTS = INSERT_EVENTS
_SETTLE_TASK = (
    update(tasks)
    .where(_T.id == bindparam("task_id"))
    .values(
        revision=_T.revision + 1,
        update_time=bindparam("updated_at"),
        last_event_sequence=bindparam("sequence"),
        state=bindparam("task_state"),
        complete_time=bindparam("completed_at"),
    )
)


@dataclass
class Touched:
    """The tasks one transaction changes, their event logs, and the step handlers it made steps READY for."""

    connection: Connection
    actor: str
    now: datetime
    tasks: dict[str, tuple[Row[Any], EventLog]] = field(default_factory=dict)
    ready: set[tuple[str, str]] = field(default_factory=set)
    steps: dict[str, Row[Any]] = field(default_factory=dict)
    changed_steps: set[str] = field(default_factory=set)
    completions: list[dict[str, Any]] = field(default_factory=list)
    released: list[tuple[str, str]] = field(default_factory=list)
    finished: list[tuple[str, str, str]] = field(default_factory=list)
    leasable: set[str] = field(default_factory=set)  # tasks whose rows carry context and trace context
    backend: str = field(init=False)  # the dialect's name: which of each statement's builds to run

    def __post_init__(self) -> None:
        self.backend = self.connection.dialect.name

    # -- reads ----------------------------------------------------------------------------------------------------

    def load_tasks(self, task_ids: Iterable[str], *, for_leases: bool = False) -> None:
        """Read (and lock) the rows of these tasks in one query, those not read yet; `for_leases` reads their
        context and trace context too (read again for tasks already read without them)."""
        wanted = set(task_ids)
        if for_leases:
            missing = sorted(wanted - self.leasable)
            self.leasable.update(missing)
        else:
            missing = sorted(wanted - self.tasks.keys())
        if not missing:
            return
        statement: Select[Any] = (_TASKS_FOR_LEASES if for_leases else _TASKS_BY_ID)[self.backend]
        for row in fetch(self.connection, statement, {"task_ids": missing}):
            known = self.tasks.get(row.id)
            events = known[1] if known is not None else EventLog(row.id, row.last_event_sequence, self.actor, self.now)
            self.tasks[row.id] = (row, events)

    def task(self, task_id: str) -> tuple[Row[Any], EventLog]:
        """The task's row (locked) and its event log in this transaction."""
        if task_id not in self.tasks:
            self.load_tasks([task_id])
            if task_id not in self.tasks:  # steps cascade with their task, so this cannot happen
                raise LookupError(f"task {task_id} of a step is missing")
        return self.tasks[task_id]

    def load_steps(self, step_ids: Iterable[str]) -> None:
        """Read (and lock) these step rows in one query, and the rows of their tasks in another."""
        missing = sorted(set(step_ids) - self.steps.keys())
        if missing:
            self.steps.update(
                {row.id: row for row in fetch(self.connection, _STEPS_BY_ID[self.backend], {"step_ids": missing})}
            )
        self.load_tasks(row.task_id for row in self.steps.values())

    def step(self, step_id: str) -> Row[Any] | None:
        """A step's row as it stands now: the one read by `load_steps`, or read again when this transaction has
        changed it since."""
        if step_id in self.changed_steps or step_id not in self.steps:
            self.flush()
            found = fetch(self.connection, _STEPS_BY_ID[self.backend], {"step_ids": [step_id]})
            if not found:
                return None
            row = found[0]
            self.steps[step_id] = row
            self.changed_steps.discard(step_id)
        return self.steps[step_id]

    # -- deferred writes -----------------------------------------------------------------------------------------

    def changed(self, step_id: str) -> None:
        """Note that this transaction wrote the step (its loaded row is stale)."""
        self.changed_steps.add(step_id)

    def complete_step(self, row: Row[Any], result: dict[str, Any], release: bool) -> None:
        """Complete a RUNNING step (written at the next flush), and release its dependents when `release`."""
        self.completions.append({"step_id": row.id, "step_result": result, "completed_at": self.now})
        self.changed(row.id)
        if release:
            self.release(row.task_id, row.id)

    def release(self, task_id: str, step_id: str) -> None:
        """The step is done: at the next flush each of its dependents has one dependency less, and those with
        none left become READY."""
        self.released.append((task_id, step_id))

    def flush(self) -> None:
        """Write the deferred completions, then make READY the dependents that have no dependency left."""
        if self.completions:
            execute_many(self.connection, _COMPLETE_STEP, self.completions)
            self.completions = []
        if self.released:
            released, self.released = self.released, []
            self._release([step_id for _task_id, step_id in released])

    def _release(self, step_ids: list[str]) -> None:
        done = Counter(row[0] for row in fetch(self.connection, _DEPENDENTS[self.backend], {"step_ids": step_ids}))
        if not done:
            return
        execute_many(self.connection, _DEPENDENCY_DONE, [{"step_id": sid, "done": n} for sid, n in done.items()])
        ready = fetch(self.connection, _NOW_READY[self.backend], {"step_ids": list(done)})
        if not ready:
            return
        run(self.connection, _MAKE_READY[self.backend], {"step_ids": [r.id for r in ready], "ready_at": self.now})
        for r in ready:
            self.changed(r.id)
            _row, events = self.task(r.task_id)
            events.step(r.name, StepState.PENDING, StepState.READY, r.attempts, "dependencies done")
            self.ready.add((r.namespace, r.step_handler))

    # -- the end of the transaction -------------------------------------------------------------------------------

    def settle(self, reason: str = "steps changed", *, only_claims: bool = False) -> None:
        """Derive and store the state of every touched task, with its events and a new revision.

        `only_claims`: the transaction only leased READY steps. The task's state then follows without reading its
        steps: a step is RUNNING now, and a FAILED task (a failed step, independent ones still dispatched) stays
        FAILED — the stored state always agrees with the steps, since every change of them settles it."""
        self.flush()
        if not self.tasks:
            return
        states: dict[str, list[StepState]] = {task_id: [] for task_id in self.tasks}
        if only_claims:
            for task_id, (row, _events) in self.tasks.items():
                states[task_id] = [StepState.RUNNING, *([StepState.FAILED] if row.state == "FAILED" else [])]
        else:
            for task_id, state in fetch(self.connection, _STEP_STATES[self.backend], {"task_ids": list(self.tasks)}):
                states[task_id].append(StepState(state))
        updates, events_rows = [], []
        for task_id, (row, events) in self.tasks.items():
            current = TaskState(row.state)
            derived = derive_task_state(
                states[task_id], cancelled=current is TaskState.CANCELLED, started=current is not TaskState.PENDING
            )
            completed_at = row.complete_time
            if derived is not current:
                transition_task(current, derived)
                events.task(current, derived, reason)
                completed_at = events.now if derived in (TaskState.COMPLETED, TaskState.FAILED) else None
                if completed_at is not None:
                    self.finished.append((row.namespace, row.handler_name, derived.value.lower()))
            if not events.rows and derived is current:
                continue
            events_rows += events.rows
            events.rows = []
            updates.append(
                {
                    "task_id": task_id,
                    "updated_at": events.now,
                    "sequence": events.last_sequence,
                    "task_state": derived.value,
                    "completed_at": completed_at,
                }
            )
        if events_rows:
            execute_many(self.connection, _INSERT_EVENTS, events_rows)
        if updates:
            execute_many(self.connection, _SETTLE_TASK, updates)

    def announce(self, notifier: Notifier) -> None:
        """After the commit: wake pollers of the step handlers with new READY steps and watchers of the tasks, and
        count the tasks that finished."""
        by_namespace: dict[str, list[str]] = {}
        for namespace, handler in self.ready:
            by_namespace.setdefault(namespace, []).append(handler)
        for namespace, handlers in by_namespace.items():
            notifier.steps_ready(namespace, handlers)
        for task_id in self.tasks:
            notifier.task_changed(task_id)
        for (namespace, handler, outcome), count in Counter(self.finished).items():
            TASKS_FINISHED.labels(namespace, handler, outcome).inc(count)
