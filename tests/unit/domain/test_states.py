"""Step and task state machines: every pair of states against the tables, and the derived task state."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.domain.states import (
    DONE_STATES,
    INVALID_TRANSITION,
    STEP_TRANSITIONS,
    TASK_TRANSITIONS,
    StepState,
    TaskState,
    derive_task_state,
    is_final,
    transition_step,
    transition_task,
)
from baton.errors import FailedPrecondition
from baton.store.tables import STEP_STATES, TASK_STATES

S = StepState
T = TaskState

ALLOWED_STEP_MOVES = {
    (S.PENDING, S.READY),
    (S.PENDING, S.CANCELLED),
    (S.PENDING, S.RESOLVED_MANUALLY),
    (S.READY, S.RUNNING),
    (S.READY, S.CANCELLED),
    (S.READY, S.RESOLVED_MANUALLY),
    (S.RUNNING, S.COMPLETED),
    (S.RUNNING, S.READY),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.CANCELLED),
    (S.RUNNING, S.RESOLVED_MANUALLY),
    (S.FAILED, S.READY),
    (S.FAILED, S.RESOLVED_MANUALLY),
}
ALLOWED_TASK_MOVES = {
    (T.PENDING, T.RUNNING),
    (T.PENDING, T.COMPLETED),
    (T.PENDING, T.FAILED),
    (T.PENDING, T.CANCELLED),
    (T.RUNNING, T.COMPLETED),
    (T.RUNNING, T.FAILED),
    (T.RUNNING, T.CANCELLED),
    (T.FAILED, T.RUNNING),
    (T.FAILED, T.COMPLETED),
    (T.FAILED, T.CANCELLED),
}


def test_values_are_the_strings_the_store_keeps() -> None:
    assert tuple(TaskState) == TASK_STATES
    assert tuple(StepState) == STEP_STATES
    assert StepState("RESOLVED_MANUALLY") is S.RESOLVED_MANUALLY


def test_tables_cover_every_state() -> None:
    assert set(STEP_TRANSITIONS) == set(StepState)
    assert set(TASK_TRANSITIONS) == set(TaskState)


@pytest.mark.parametrize(("current", "target"), list(itertools.product(StepState, StepState)))
def test_every_step_move_is_allowed_exactly_when_listed(current: StepState, target: StepState) -> None:
    if (current, target) in ALLOWED_STEP_MOVES:
        assert transition_step(current, target) is target
    else:
        with pytest.raises(FailedPrecondition) as raised:
            transition_step(current, target)
        assert raised.value.reason == INVALID_TRANSITION
        assert current.value in raised.value.message
        assert target.value in raised.value.message
        assert raised.value.metadata == {"from_state": current.value, "to_state": target.value}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(TaskState, TaskState)))
def test_every_task_move_is_allowed_exactly_when_listed(current: TaskState, target: TaskState) -> None:
    if (current, target) in ALLOWED_TASK_MOVES:
        assert transition_task(current, target) is target
    else:
        with pytest.raises(FailedPrecondition, match=f"from {current.value} to {target.value}") as raised:
            transition_task(current, target)
        assert raised.value.reason == INVALID_TRANSITION


def test_final_states() -> None:
    assert {s for s in StepState if is_final(s)} == {S.COMPLETED, S.CANCELLED, S.RESOLVED_MANUALLY}
    assert {s for s in TaskState if is_final(s)} == {T.COMPLETED, T.CANCELLED}
    assert {S.COMPLETED, S.RESOLVED_MANUALLY} == DONE_STATES
    assert not is_final(S.FAILED)
    assert not is_final(T.FAILED)


@pytest.mark.parametrize(
    ("steps", "cancelled", "started", "expected"),
    [
        ([S.PENDING, S.READY], False, False, T.PENDING),
        ([S.READY, S.READY], False, True, T.RUNNING),  # an expired first attempt is READY again
        ([S.RUNNING, S.PENDING], False, False, T.RUNNING),
        ([S.COMPLETED, S.PENDING], False, False, T.RUNNING),
        ([S.RESOLVED_MANUALLY, S.READY], False, False, T.RUNNING),
        ([S.COMPLETED, S.RESOLVED_MANUALLY], False, True, T.COMPLETED),
        ([S.RESOLVED_MANUALLY], False, False, T.COMPLETED),
        ([S.FAILED, S.RUNNING, S.PENDING], False, True, T.FAILED),
        ([S.FAILED, S.COMPLETED], False, True, T.FAILED),
        ([S.FAILED, S.RUNNING], True, True, T.CANCELLED),
        ([S.COMPLETED, S.CANCELLED], True, True, T.CANCELLED),
        ([], False, False, T.COMPLETED),
    ],
)
def test_derive_task_state(steps: list[StepState], cancelled: bool, started: bool, expected: TaskState) -> None:
    assert derive_task_state(steps, cancelled=cancelled, started=started) is expected


def test_derive_accepts_any_iterable() -> None:
    assert derive_task_state(iter([S.RUNNING]), cancelled=False) is T.RUNNING


_STEP_MOVES = sorted(ALLOWED_STEP_MOVES)


@settings(deadline=None)
@given(
    st.integers(min_value=1, max_value=6).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, len(_STEP_MOVES) - 1)), max_size=40),
            st.integers(min_value=0, max_value=40),
        )
    )
)
def test_derived_task_moves_follow_the_task_table(case: tuple[int, list[tuple[int, int]], int]) -> None:
    """Any run of allowed step moves (and a cancel at some point) only moves the task as its table allows."""
    count, moves, cancel_at = case
    steps = [S.PENDING] * count
    started = cancelled = False
    task = derive_task_state(steps, cancelled=False)
    assert task is T.PENDING
    for number, (which, move) in enumerate(moves):
        if number == cancel_at and not is_final(task):
            cancelled = True
        else:
            current, target = _STEP_MOVES[move]
            if steps[which] is not current or (cancelled and target is not S.CANCELLED):
                continue
            steps[which] = transition_step(current, target)
            started = started or target is S.RUNNING
        derived = derive_task_state(steps, cancelled=cancelled, started=started)
        if derived is not task:
            task = transition_task(task, derived)
