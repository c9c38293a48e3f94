"""Writing new tasks: any number in one transaction, each table one executemany, the records built from the rows.

`write_tasks` takes validated requests with their resolved handler definitions. A request_id already used by the
same caller in the namespace returns that task (ALREADY_EXISTS when the body differs); so does a request_id
repeated within the batch. With `all_or_nothing` (BatchCreateTasks) the first such error aborts the transaction;
without it (group-committed CreateTask calls) each request gets its own answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Connection

from baton.domain.dag import topological_order
from baton.domain.handlers import HandlerDefinition
from baton.domain.states import StepState, TaskState
from baton.engine import task_sql
from baton.engine.task_create import NewTask, new_task_rows
from baton.engine.task_sql import EventLog, StepRecord, TaskRecord
from baton.errors import AlreadyExists, ResourceRef
from baton.store.bulk import execute_many
from baton.store.tables import step_dependencies, steps, task_tags, tasks

#: ResourceInfo.resource_type of a task.
TASK_RESOURCE_TYPE = "baton.v1.Task"
#: ErrorInfo.reason of a request_id reused with another request body.
REQUEST_ID_REUSED = "REQUEST_ID_REUSED"

# Statements built once: building one (and its cache key) per call costs more than running it.
_INSERT_TASKS = insert(tasks)
_INSERT_TAGS = insert(task_tags)
_INSERT_STEPS = insert(steps)
_INSERT_DEPENDENCIES = insert(step_dependencies)
_INSERT_EVENTS = task_sql.INSERT_EVENTS

Rows = tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], EventLog]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated CreateTask request, its handler definition and the digest of its body (when it has a
    request_id)."""

    entry: NewTask
    definition: HandlerDefinition
    digest: str | None


def write_tasks(
    connection: Connection,
    batch: Sequence[Prepared],
    now: datetime,
    *,
    all_or_nothing: bool,
    before_insert: Callable[[Sequence[Rows]], None] | None = None,
) -> list[TaskRecord | Exception]:
    """Create the batch's tasks (or find those created before by request_id); one answer per request.

    `before_insert` sees the new rows before they are written and may change them (eager dispatch leases steps
    there); the answers describe the tasks as created, before that."""
    answers: list[TaskRecord | Exception | None] = []
    created: list[tuple[int, Rows, HandlerDefinition]] = []
    first_of: dict[tuple[str, str, str], tuple[int, str | None]] = {}
    aliases: list[tuple[int, int]] = []
    for index, prepared in enumerate(batch):
        entry = prepared.entry
        key = (entry.namespace, entry.creator, entry.request_id)
        if entry.request_id and key in first_of:
            first, digest = first_of[key]
            if digest == prepared.digest:
                aliases.append((index, first))
                answers.append(None)
            else:
                answers.append(_raise_or(_reused(entry.request_id, ""), all_or_nothing))
            continue
        if entry.request_id:
            first_of[key] = (index, prepared.digest)
            row = task_sql.find_by_request_id(connection, entry.namespace, entry.creator, entry.request_id)
            if row is not None:
                task = task_sql.load_task(connection, row.id)
                assert task is not None
                same = task.request_hash == prepared.digest
                answers.append(task if same else _raise_or(_reused(entry.request_id, task.id), all_or_nothing))
                continue
        created.append((index, new_task_rows(entry, prepared.definition, prepared.digest, now), prepared.definition))
        answers.append(None)
    records = [(index, task_record(rows, definition)) for index, rows, definition in created]
    new_rows = [rows for _, rows, _ in created]
    if before_insert is not None and new_rows:
        before_insert(new_rows)
    insert_tasks(connection, new_rows)
    for index, record in records:
        answers[index] = record
    for index, first in aliases:
        answers[index] = answers[first]
    return [answer if answer is not None else LookupError("unanswered") for answer in answers]


def insert_tasks(connection: Connection, created: Sequence[Rows]) -> None:
    """Insert tasks with their tags, steps, dependencies and events: one executemany per table.

    IntegrityError when a request_id was taken meanwhile."""
    if not created:
        return
    execute_many(
        connection,
        _INSERT_TASKS,
        [{**task, "last_event_sequence": events.last_sequence} for task, _, _, events in created],
    )
    tags = [{"task_id": task["id"], "tag": tag} for task, _, _, _ in created for tag in task["tags"]]
    if tags:
        execute_many(connection, _INSERT_TAGS, tags)
    execute_many(connection, _INSERT_STEPS, [row for _, step_rows, _, _ in created for row in step_rows])
    dependencies = [row for _, _, links, _ in created for row in links]
    if dependencies:
        execute_many(connection, _INSERT_DEPENDENCIES, dependencies)
    execute_many(connection, _INSERT_EVENTS, [row for _, _, _, events in created for row in events.rows])
    for _, _, _, events in created:
        events.rows.clear()


def task_record(rows: Rows, definition: HandlerDefinition) -> TaskRecord:
    """The record of a task just inserted, built from its rows (what reading it back would give)."""
    task, step_rows, _, _ = rows
    position = {step.name: i for i, step in enumerate(definition.steps)}
    templates = {step.name: step for step in definition.steps}
    records = [
        StepRecord(
            id=row["id"],
            name=row["name"],
            position=row["position"],
            state=StepState(row["state"]),
            step_handler=row["step_handler"],
            depends_on=tuple(sorted(templates[row["name"]].depends_on, key=position.__getitem__)),
            attempts=0,
            max_attempts=row["max_attempts"],
            next_attempt_at=row["next_attempt_at"],
            ready_time=row["ready_time"],
        )
        for row in step_rows
    ]
    by_name = {record.name: record for record in records}
    return TaskRecord(
        id=task["id"],
        namespace=task["namespace"],
        handler_name=task["handler_name"],
        handler_version=task["handler_version"],
        state=TaskState(task["state"]),
        context=task["context"],
        tags=tuple(task["tags"]),
        priority=task["priority"],
        correlation_id=task["correlation_id"],
        request_id=task["request_id"],
        creator=task["creator"],
        request_hash=task["request_hash"],
        revision=1,
        create_time=task["create_time"],
        update_time=task["update_time"],
        complete_time=None,
        trace_context=dict(task["trace_context"]),
        steps=tuple(by_name[name] for name in topological_order(records)),
    )


def _reused(request_id: str, task_id: str) -> AlreadyExists:
    """ALREADY_EXISTS for a request_id used before (by `task_id`, or earlier in the batch) with another body."""
    where = f"task {task_id}" if task_id else "earlier in this batch"
    return AlreadyExists(
        f"request_id {request_id!r} was used for another request ({where}); use a new request_id",
        reason=REQUEST_ID_REUSED,
        metadata={"request_id": request_id, "id": task_id},
        resource=ResourceRef(TASK_RESOURCE_TYPE, f"tasks/{task_id}") if task_id else None,
    )


def _raise_or(error: Exception, all_or_nothing: bool) -> Exception:
    if all_or_nothing:
        raise error
    return error
