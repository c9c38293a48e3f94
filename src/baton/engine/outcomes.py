"""What happens to a step when an attempt ends, inside one write transaction: complete, fail, expire, heartbeat.

The transaction's rows, deferred writes and the settling of its tasks are `Touched` (engine/touched.py). Outcomes
are per lease: a stale or unknown lease gets its code and changes nothing, while the other leases of the same call
still apply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.engine import Connection

from baton.domain.backoff import RetryDecision, RetryDefaults, RetryPolicy, resolve_retry_policy
from baton.domain.states import StepState, TaskState
from baton.engine.touched import Touched
from baton.store.tables import steps, tasks

OK, INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION = 0, 3, 5, 9
Visible = Callable[[str], bool]
_S = steps.c


@dataclass(frozen=True, slots=True)
class LeaseRef:
    """A lease as a worker names it: the step and the fencing token of its attempt."""

    step_id: str
    fencing_token: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer for one lease; `counted` and `run_seconds` feed the step metrics."""

    step_id: str
    code: int = OK
    message: str = ""
    step_state: StepState | None = None
    next_attempt_at: datetime | None = None
    lease_expire_time: datetime | None = None
    cancel_requested: bool = False
    counted: str = ""
    run_seconds: float | None = None
    namespace: str = ""
    task_id: str = ""


def leased_step(connection: Connection, lease: LeaseRef, visible: Visible) -> tuple[Row[Any] | None, Outcome | None]:
    """The step row of a lease (locked), and the refusal when the lease is unknown (NOT_FOUND) or not current (9)."""
    row = connection.execute(select(steps).where(_S.id == lease.step_id).with_for_update(key_share=True)).first()
    return row, check_lease(row, lease, visible)


def touched_lease(touched: Touched, lease: LeaseRef, visible: Visible) -> tuple[Row[Any] | None, Outcome | None]:
    """`leased_step` from the rows the transaction has loaded (`Touched.load_steps`)."""
    row = touched.step(lease.step_id)
    return row, check_lease(row, lease, visible)


def check_lease(row: Row[Any] | None, lease: LeaseRef, visible: Visible) -> Outcome | None:
    """The refusal of a lease whose step is unknown or invisible (NOT_FOUND) or whose attempt is not current (9)."""
    if row is None or not visible(row.namespace):
        return Outcome(lease.step_id, NOT_FOUND, f"step {lease.step_id[:64]} not found")
    if row.state != StepState.RUNNING.value or row.fencing_token != lease.fencing_token:
        message = (
            f"lease token {lease.fencing_token} is not the current lease of step {row.id} "
            f"(state {row.state}, token {row.fencing_token})"
        )
        return Outcome(row.id, FAILED_PRECONDITION, message, StepState(row.state), namespace=row.namespace)
    return None


def complete(touched: Touched, lease: LeaseRef, result: dict[str, Any], visible: Visible) -> Outcome:
    """Complete a leased step with its result and release its dependents (not those of a cancelled task).

    A repeat of a completion already applied with the same token answers OK and changes nothing."""
    row, refused = touched_lease(touched, lease, visible)
    if refused is not None:
        done = row is not None and row.state == StepState.COMPLETED.value and row.fencing_token == lease.fencing_token
        return Outcome(lease.step_id, OK, step_state=StepState.COMPLETED) if done else refused
    assert row is not None
    task_row, events = touched.task(row.task_id)
    touched.complete_step(row, result, release=task_row.state != TaskState.CANCELLED.value)
    events.step(row.name, StepState.RUNNING, StepState.COMPLETED, row.attempts, f"completed by {touched.actor}")
    return Outcome(
        row.id,
        step_state=StepState.COMPLETED,
        counted="completed",
        run_seconds=_run_seconds(row, touched.now),
        namespace=row.namespace,
    )


def failed_attempt(
    touched: Touched,
    row: Row[Any],
    error: dict[str, Any],
    decide: Callable[[RetryPolicy, int], RetryDecision],
    defaults: RetryDefaults,
) -> Outcome:
    """End a RUNNING attempt as failed: READY again after the decided delay, FAILED when no retry is left, or
    CANCELLED when its task was cancelled meanwhile. `error` is stored as the step's last_error."""
    task_row, events = touched.task(row.task_id)
    touched.changed(row.id)
    error = {**error, "attempt": row.attempts}
    values: dict[str, Any] = {"last_error": error, "lease_expire_time": None}
    run_seconds = _run_seconds(row, touched.now)
    if task_row.state == TaskState.CANCELLED.value:
        values.update(state=StepState.CANCELLED.value, complete_time=touched.now, next_attempt_at=None)
        touched.connection.execute(update(steps).where(_S.id == row.id).values(**values))
        events.step(row.name, StepState.RUNNING, StepState.CANCELLED, row.attempts, "task cancelled")
        return Outcome(
            row.id, step_state=StepState.CANCELLED, counted="failed", run_seconds=run_seconds, namespace=row.namespace
        )
    decision = decide(retry_policy(row, defaults), row.attempts)
    if decision.retry:
        at = touched.now + timedelta(seconds=decision.delay)
        values.update(state=StepState.READY.value, next_attempt_at=at, ready_time=at)
        if decision.refund:
            values.update(attempts=max(0, row.attempts - 1))
        touched.connection.execute(update(steps).where(_S.id == row.id).values(**values))
        events.step(row.name, StepState.RUNNING, StepState.READY, row.attempts, decision.reason)
        touched.ready.add((row.namespace, row.step_handler))
        return Outcome(
            row.id,
            step_state=StepState.READY,
            next_attempt_at=at,
            counted="retried",
            run_seconds=run_seconds,
            namespace=row.namespace,
        )
    values.update(state=StepState.FAILED.value, complete_time=touched.now, next_attempt_at=None)
    touched.connection.execute(update(steps).where(_S.id == row.id).values(**values))
    events.step(row.name, StepState.RUNNING, StepState.FAILED, row.attempts, decision.reason)
    return Outcome(
        row.id, step_state=StepState.FAILED, counted="failed", run_seconds=run_seconds, namespace=row.namespace
    )


def heartbeat(
    connection: Connection, lease: LeaseRef, visible: Visible, now: datetime, default_timeout: float
) -> Outcome:
    """Extend a current lease by its timeout; tell whether its task was cancelled."""
    row, refused = leased_step(connection, lease, visible)
    task_state = None if row is None else connection.execute(select(tasks.c.state).where(tasks.c.id == row.task_id))
    cancelled = task_state is not None and task_state.scalar_one() == TaskState.CANCELLED.value
    if refused is not None:
        return Outcome(refused.step_id, refused.code, refused.message, refused.step_state, cancel_requested=cancelled)
    assert row is not None
    expire = now + timedelta(seconds=lease_timeout(row, default_timeout))
    connection.execute(update(steps).where(_S.id == row.id).values(lease_expire_time=expire))
    return Outcome(
        row.id,
        step_state=StepState.RUNNING,
        lease_expire_time=expire,
        cancel_requested=cancelled,
        namespace=row.namespace,
        task_id=row.task_id,
    )


def retry_policy(row: Row[Any], defaults: RetryDefaults) -> RetryPolicy:
    """The resolved retry policy stored with a step."""
    stored = row.retry_policy or {}
    policy = RetryPolicy(
        max_attempts=int(row.max_attempts or stored.get("max_attempts") or 0),
        initial_backoff=float(stored.get("initial_backoff") or 0.0),
        backoff_coefficient=float(stored.get("backoff_coefficient") or 0.0),
        max_backoff=float(stored.get("max_backoff") or 0.0),
        jitter=float(stored.get("jitter") or 0.0),
        non_retryable_error_types=frozenset(stored.get("non_retryable_error_types") or ()),
    )
    return resolve_retry_policy(policy, defaults)


def lease_timeout(row: Row[Any], default_timeout: float) -> float:
    """The step's lease timeout in seconds (the server default when the row has none)."""
    return lease_seconds(row.lease_timeout_seconds, default_timeout)


def lease_seconds(own: float | None, default_timeout: float) -> float:
    """A step's own lease timeout in seconds, or the server default when it has none (None or 0)."""
    return float(own) if own and own > 0 else default_timeout


def _run_seconds(row: Row[Any], now: datetime) -> float | None:
    return None if row.start_time is None else max(0.0, (now - row.start_time).total_seconds())
