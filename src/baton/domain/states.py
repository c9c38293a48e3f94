"""The task and step state machines as transition tables, and the rule that derives a task's state from its steps.

The enum values are the proto enum names without their prefix ("READY"), which are also the strings the store keeps
(`baton.store.tables.TASK_STATES` / `STEP_STATES`), so a row's state converts with `StepState(row.state)`.
Validating a move is all that happens here: the engine persists the transition and records it as an event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType

from baton.errors import FailedPrecondition

#: ErrorInfo.reason of a refused state change.
INVALID_TRANSITION = "INVALID_TRANSITION"


class TaskState(StrEnum):
    """State of a task, derived from its steps (see `derive_task_state`)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class StepState(StrEnum):
    """State of one step of a task."""

    PENDING = "PENDING"
    READY = "READY"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    RESOLVED_MANUALLY = "RESOLVED_MANUALLY"


_S = StepState
_T = TaskState

#: Allowed step moves. RUNNING → READY is a failed or expired attempt with attempts left; FAILED → READY is RetryTask.
STEP_TRANSITIONS: Mapping[StepState, frozenset[StepState]] = MappingProxyType(
    {
        _S.PENDING: frozenset({_S.READY, _S.CANCELLED, _S.RESOLVED_MANUALLY}),
        _S.READY: frozenset({_S.RUNNING, _S.CANCELLED, _S.RESOLVED_MANUALLY}),
        _S.RUNNING: frozenset({_S.COMPLETED, _S.READY, _S.FAILED, _S.CANCELLED, _S.RESOLVED_MANUALLY}),
        _S.FAILED: frozenset({_S.READY, _S.RESOLVED_MANUALLY}),
        _S.COMPLETED: frozenset(),
        _S.CANCELLED: frozenset(),
        _S.RESOLVED_MANUALLY: frozenset(),
    }
)

#: Allowed task moves. A FAILED task resumes (RUNNING) on RetryTask or when its failed steps are resolved while
#: others remain, completes when resolving them finishes it, and can still be cancelled.
TASK_TRANSITIONS: Mapping[TaskState, frozenset[TaskState]] = MappingProxyType(
    {
        _T.PENDING: frozenset({_T.RUNNING, _T.COMPLETED, _T.FAILED, _T.CANCELLED}),
        _T.RUNNING: frozenset({_T.COMPLETED, _T.FAILED, _T.CANCELLED}),
        _T.FAILED: frozenset({_T.RUNNING, _T.COMPLETED, _T.CANCELLED}),
        _T.COMPLETED: frozenset(),
        _T.CANCELLED: frozenset(),
    }
)

#: Step states that satisfy the dependencies of the steps after them.
DONE_STATES: frozenset[StepState] = frozenset({_S.COMPLETED, _S.RESOLVED_MANUALLY})
#: Step states with no way out.
FINAL_STEP_STATES: frozenset[StepState] = frozenset(s for s, targets in STEP_TRANSITIONS.items() if not targets)
#: Task states with no way out.
FINAL_TASK_STATES: frozenset[TaskState] = frozenset(s for s, targets in TASK_TRANSITIONS.items() if not targets)


def is_final(state: TaskState | StepState) -> bool:
    """Whether no transition leaves `state` (a FAILED step or task is not final: it can be retried or resolved)."""
    if isinstance(state, TaskState):
        return not TASK_TRANSITIONS[state]
    return not STEP_TRANSITIONS[state]


def transition_step(current: StepState, target: StepState) -> StepState:
    """Return `target` if a step may move there from `current`; else raise FailedPrecondition (INVALID_TRANSITION)."""
    if target not in STEP_TRANSITIONS[current]:
        raise _refused("step", current, target)
    return target


def transition_task(current: TaskState, target: TaskState) -> TaskState:
    """Return `target` if a task may move there from `current`; else raise FailedPrecondition (INVALID_TRANSITION)."""
    if target not in TASK_TRANSITIONS[current]:
        raise _refused("task", current, target)
    return target


def _refused(kind: str, current: StrEnum, target: StrEnum) -> FailedPrecondition:
    return FailedPrecondition(
        f"a {kind} cannot move from {current.value} to {target.value}",
        reason=INVALID_TRANSITION,
        metadata={"from_state": current.value, "to_state": target.value},
    )


def derive_task_state(step_states: Iterable[StepState], *, cancelled: bool, started: bool = False) -> TaskState:
    """The state of a task whose steps are in `step_states`, first rule that applies:

    1. `cancelled` (the task was cancelled) → CANCELLED;
    2. any step FAILED (failed for good) → FAILED;
    3. every step COMPLETED or RESOLVED_MANUALLY → COMPLETED (vacuously so for no steps);
    4. `started`, or any step RUNNING, COMPLETED or RESOLVED_MANUALLY → RUNNING;
    5. otherwise → PENDING.

    A failed step fails the task but does not stop it: steps already leased run to completion; steps that depend
    on the failed step are never made ready; independent READY/PENDING steps are still dispatched. So the work
    that can finish does, and once an operator resolves the failed step (ResolveStep) or retries it (RetryTask)
    the task resumes (RUNNING) or completes.

    `started` says that a step of the task has been leased at some time. The engine passes it because step
    states alone forget that: a step whose only attempt expired is READY again, and a task must not go back
    from RUNNING (or FAILED, after RetryTask) to PENDING.
    """
    states = set(step_states)
    if cancelled:
        return TaskState.CANCELLED
    if StepState.FAILED in states:
        return TaskState.FAILED
    if states <= DONE_STATES:
        return TaskState.COMPLETED
    if started or not states.isdisjoint({StepState.RUNNING, *DONE_STATES}):
        return TaskState.RUNNING
    return TaskState.PENDING
