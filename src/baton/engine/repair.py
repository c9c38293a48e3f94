"""Operator repairs of a task: RetryTask (its FAILED steps run again) and ResolveStep (a step is done by hand).

Each is one write transaction under the task's row lock. Tasks are looked up with a `visible(namespace)` predicate:
a task the caller may not repair is NOT_FOUND, exactly like a missing one. Dependents of a resolved step proceed as
on completion, and the task state is derived again (a failed task whose only failed step is resolved continues).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.engine import Connection

from baton.domain.dag import shorten
from baton.domain.states import StepState, TaskState, transition_step
from baton.engine.notify import Notifier
from baton.engine.task_sql import EventLog
from baton.engine.tasks import TASK_RESOURCE_TYPE, TaskEngine, TaskRecord, task_not_found
from baton.engine.touched import Touched
from baton.errors import Aborted, FailedPrecondition, FieldViolation, InvalidArgument, NotFound, ResourceRef
from baton.store import SqlStore
from baton.store.tables import steps

Visible = Callable[[str], bool]
#: Largest result an operator may give a resolved step, encoded.
MAX_RESULT_BYTES = 256 * 1024
_S = steps.c


class TaskRepair:
    """RetryTask and ResolveStep."""

    def __init__(self, store: SqlStore, notifier: Notifier, tasks: TaskEngine) -> None:
        self._store = store
        self._notifier = notifier
        self._tasks = tasks

    async def retry(self, task_id: str, visible: Visible, *, actor: str, etag: str = "") -> TaskRecord:
        """Make a FAILED task's FAILED steps READY with fresh attempts; the task runs again."""
        await self._tasks.get(task_id, visible, with_steps=False)  # NOT_FOUND before anything else

        def write(touched: Touched) -> None:
            row, events = _locked_task(touched, task_id, visible, etag)
            if row.state != TaskState.FAILED.value:
                raise FailedPrecondition(
                    f"task {task_id} is {row.state}; only a FAILED task can be retried",
                    reason="TASK_NOT_FAILED",
                    metadata={"id": task_id, "state": row.state},
                )
            query = select(_S.id, _S.name, _S.namespace, _S.step_handler, _S.attempts).where(
                _S.task_id == task_id, _S.state == StepState.FAILED.value
            )
            failed = touched.connection.execute(query.order_by(_S.position)).all()
            for step in failed:
                transition_step(StepState.FAILED, StepState.READY)
                events.step(step.name, StepState.FAILED, StepState.READY, step.attempts, "task retried")
                touched.ready.add((step.namespace, step.step_handler))
            touched.connection.execute(
                update(steps)
                .where(_S.id.in_([step.id for step in failed]))
                .values(
                    state=StepState.READY.value,
                    attempts=0,
                    ready_time=touched.now,
                    next_attempt_at=touched.now,
                    complete_time=None,
                )
            )

        await self._write(actor, write, "task retried")
        return await self._tasks.get(task_id, visible)

    async def resolve(
        self,
        task_id: str,
        step_name: str,
        visible: Visible,
        *,
        actor: str,
        result: dict[str, Any],
        result_size: int = 0,
        reason: str = "",
    ) -> TaskRecord:
        """Mark a step not yet finished RESOLVED_MANUALLY with `result`; its dependents proceed."""
        if result_size > MAX_RESULT_BYTES:
            raise InvalidArgument(
                f"result is {result_size} bytes, at most {MAX_RESULT_BYTES}",
                field_violations=[FieldViolation("result", f"at most {MAX_RESULT_BYTES} bytes once encoded")],
            )
        await self._tasks.get(task_id, visible, with_steps=False)

        def write(touched: Touched) -> None:
            row, events = _locked_task(touched, task_id, visible, "")
            query = select(steps).where(_S.task_id == task_id, _S.name == step_name).with_for_update(key_share=True)
            step = touched.connection.execute(query).first()
            if step is None:
                shown = shorten(step_name)
                raise NotFound(
                    f"task {task_id} has no step {shown!r}",
                    reason="STEP_NOT_FOUND",
                    metadata={"id": task_id, "step_name": shown},
                    resource=ResourceRef(TASK_RESOURCE_TYPE, f"tasks/{task_id}/steps/{shown}"),
                )
            state = StepState(step.state)
            if state in (StepState.COMPLETED, StepState.CANCELLED, StepState.RESOLVED_MANUALLY):
                raise FailedPrecondition(
                    f"step {step_name!r} is {state.value} and cannot be resolved",
                    reason="STEP_FINISHED",
                    metadata={"id": task_id, "step_name": step_name, "state": state.value},
                )
            transition_step(state, StepState.RESOLVED_MANUALLY)
            touched.connection.execute(
                update(steps)
                .where(_S.id == step.id)
                .values(
                    state=StepState.RESOLVED_MANUALLY.value,
                    result=result,
                    complete_time=touched.now,
                    lease_expire_time=None,
                    next_attempt_at=None,
                )
            )
            why = reason or "resolved manually"
            events.step(step.name, state, StepState.RESOLVED_MANUALLY, step.attempts, why)
            touched.changed(step.id)
            if row.state != TaskState.CANCELLED.value:
                touched.release(task_id, step.id)

        await self._write(actor, write, "step resolved")
        return await self._tasks.get(task_id, visible)

    async def _write(self, actor: str, apply: Callable[[Touched], None], reason: str) -> None:
        now = datetime.now(UTC)

        def write(connection: Connection) -> Touched:
            touched = Touched(connection, actor, now)
            apply(touched)
            touched.settle(reason)
            return touched

        touched = await self._store.run_in_transaction(write)
        touched.announce(self._notifier)


def _locked_task(touched: Touched, task_id: str, visible: Visible, etag: str) -> tuple[Row[Any], EventLog]:
    """The task's row under the write lock (the caller checked before that it exists and is visible)."""
    row, events = touched.task(task_id)
    if not visible(row.namespace):
        raise task_not_found(task_id)
    if etag and etag != str(row.revision):
        raise Aborted(
            f"task {task_id} changed: etag {etag!r} is not the current one; read it again",
            reason="ETAG_MISMATCH",
            metadata={"id": task_id, "etag": str(row.revision)},
        )
    return row, events
