"""WatchTask's engine side: a snapshot of a task, then its events in sequence order until it finishes.

Events are read from `task_events` by sequence after every wake-up, never taken from the wake-up itself, so a
watch resumed with the last sequence it saw gets exactly the events after it: no gaps, no duplicates. Waiting uses
`Notifier.wait_for_task`, registered before each read so that a change committed after the read always wakes it;
the wait is also bounded by a re-check interval, which caps what a missed wake-up (or a write on another replica)
costs. The snapshot and the sequence it stands at come from the same `tasks` row.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Row, select
from sqlalchemy.engine import Connection

from baton.domain.states import StepState, TaskState
from baton.engine import task_sql
from baton.engine.notify import Notifier
from baton.engine.task_sql import TaskRecord
from baton.engine.tasks import task_not_found
from baton.store import SqlStore
from baton.store.tables import task_events

__all__ = ["BATCH_SIZE", "END_STATES", "RECHECK_SECONDS", "TaskEventRecord", "TaskWatcher", "events_after"]

T = TypeVar("T")
#: Longest wait for a wake-up before the events are read again anyway.
RECHECK_SECONDS = 15.0
#: Most events read in one query.
BATCH_SIZE = 500
#: Task states that end a watch (a FAILED task may still be retried: a new watch follows that).
END_STATES: frozenset[TaskState] = frozenset({TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED})
#: Shortest wait, so that a call at its deadline does not spin until the deadline cancels it.
_MIN_WAIT = 0.05


@dataclass(frozen=True, slots=True)
class TaskEventRecord:
    """One stored state transition of a task (`step_name` None) or of one of its steps."""

    task_id: str
    sequence: int
    step_name: str | None
    previous_task_state: TaskState | None
    task_state: TaskState | None
    previous_step_state: StepState | None
    step_state: StepState | None
    attempt: int | None
    reason: str
    actor: str
    create_time: datetime

    @property
    def ends_watch(self) -> bool:
        """Whether this event moved the task into one of END_STATES."""
        return self.task_state in END_STATES


def events_after(
    connection: Connection, task_id: str, after_sequence: int, limit: int = BATCH_SIZE
) -> list[TaskEventRecord]:
    """Up to `limit` events of a task with a sequence above `after_sequence`, in sequence order."""
    query = (
        select(task_events)
        .where(task_events.c.task_id == task_id, task_events.c.sequence > after_sequence)
        .order_by(task_events.c.sequence)
        .limit(limit)
    )
    return [_event_from_row(row) for row in connection.execute(query)]


def _event_from_row(row: Row[Any]) -> TaskEventRecord:
    return TaskEventRecord(
        task_id=row.task_id,
        sequence=row.sequence,
        step_name=row.step_name,
        previous_task_state=None if row.previous_task_state is None else TaskState(row.previous_task_state),
        task_state=None if row.task_state is None else TaskState(row.task_state),
        previous_step_state=None if row.previous_step_state is None else StepState(row.previous_step_state),
        step_state=None if row.step_state is None else StepState(row.step_state),
        attempt=row.attempt,
        reason=row.reason,
        actor=row.actor,
        create_time=row.create_time,
    )


def _snapshot(connection: Connection, task_id: str) -> tuple[TaskRecord, int] | None:
    """The task with its steps and the sequence of its last event, or None."""
    row = task_sql.task_row(connection, task_id)
    if row is None:
        return None
    task = task_sql.task_from_row(row, task_sql.load_steps(connection, task_id))
    return task, int(row.last_event_sequence)


class TaskWatcher:
    """Streams a task: its snapshot, then its events, until it finishes or the notifier closes."""

    def __init__(
        self,
        store: SqlStore,
        notifier: Notifier,
        *,
        recheck_seconds: float = RECHECK_SECONDS,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self._store = store
        self.notifier = notifier
        self._recheck_seconds = recheck_seconds
        self._batch_size = batch_size

    async def watch(
        self,
        task_id: str,
        visible: Callable[[str], bool],
        after_sequence: int = 0,
        time_left: Callable[[], float | None] = lambda: None,
    ) -> AsyncIterator[TaskRecord | TaskEventRecord]:
        """The task first, then its events with a sequence above `after_sequence` (0: only those after the
        snapshot), until the event that ends it (see END_STATES). A task that had already ended when the watch
        started gets its snapshot and the replay, nothing more. Returns quietly when the notifier closes (server
        shutdown). NOT_FOUND when the task does not exist or `visible` refuses its namespace.

        `time_left` gives the seconds left in the call (None: unbounded); no wait outlasts it."""
        found = await self._read(lambda c: _snapshot(c, task_id)) if _is_uuid(task_id) else None
        if found is None or not visible(found[0].namespace):
            raise task_not_found(task_id)
        task, last_sequence = found
        yield task
        cursor = after_sequence if after_sequence > 0 else last_sequence
        if task.state in END_STATES:
            async for event in self._replay(task_id, cursor):
                yield event
            return
        while True:
            # Register for wake-ups before reading: a change committed after the read then always wakes us.
            waiter = asyncio.ensure_future(self.notifier.wait_for_task(task_id, self._max_wait(time_left)))
            try:
                await asyncio.sleep(0)
                batch = await self._events(task_id, cursor)
                for event in batch:
                    yield event
                    cursor = event.sequence
                    if event.ends_watch:
                        return
                if len(batch) == self._batch_size:
                    continue  # more are stored: read on before waiting
                if not await waiter and self.notifier.closed:
                    return  # server shutdown: end the stream cleanly
            finally:
                waiter.cancel()

    async def _replay(self, task_id: str, cursor: int) -> AsyncIterator[TaskEventRecord]:
        """Every stored event above `cursor`, batch by batch."""
        while True:
            batch = await self._events(task_id, cursor)
            for event in batch:
                yield event
                cursor = event.sequence
            if len(batch) < self._batch_size:
                return

    async def _events(self, task_id: str, cursor: int) -> list[TaskEventRecord]:
        return await self._read(lambda c: events_after(c, task_id, cursor, self._batch_size))

    def _max_wait(self, time_left: Callable[[], float | None]) -> float:
        remaining = time_left()
        if remaining is None:
            return self._recheck_seconds
        return min(self._recheck_seconds, max(remaining, _MIN_WAIT))

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        return await self._store.run_read(fn)


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False
