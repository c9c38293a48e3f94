"""Dispatch on every backend: exclusive claims, dependents made ready, fencing, retries, exhaustion and expiry."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from baton.config import EngineConfig
from baton.domain.backoff import RetryPolicy
from baton.domain.handlers import HandlerDefinition, StepDefinition
from baton.domain.states import StepState, TaskState
from baton.engine.dispatch import Completion, Dispatcher, Failure, LeaseRef
from baton.engine.handlers import HandlerRegistry
from baton.engine.notify import Notifier
from baton.engine.tasks import NewTask, TaskEngine
from baton.store import SqlStore, tables

DIAMOND = (
    StepDefinition("fetch", "work.fetch"),
    StepDefinition("left", "work.side", depends_on=("fetch",)),
    StepDefinition("right", "work.side", depends_on=("fetch",)),
    StepDefinition("merge", "work.merge", depends_on=("left", "right")),
)
WIDE = tuple(StepDefinition(f"s{i}", "work.wide") for i in range(20))
ONCE = (StepDefinition("only", "work.once", retry_policy=RetryPolicy(max_attempts=1)),)
TWICE = (StepDefinition("only", "work.twice", retry_policy=RetryPolicy(max_attempts=2, initial_backoff=5)),)
ALL = ["work.fetch", "work.side", "work.merge"]


def everywhere(_namespace: str) -> bool:
    return True


@pytest.fixture
async def tasks(store: SqlStore) -> TaskEngine:
    registry = HandlerRegistry.from_config(store, EngineConfig())
    for name, steps in (("diamond", DIAMOND), ("wide", WIDE), ("once", ONCE), ("twice", TWICE)):
        await registry.register(HandlerDefinition("billing", name, "1.0.0", steps))
    return TaskEngine.from_config(store, registry, EngineConfig())


@pytest.fixture
def dispatch(store: SqlStore) -> Dispatcher:
    return Dispatcher(store, Notifier(), EngineConfig())


async def create(tasks: TaskEngine, handler: str) -> str:
    task = await tasks.create(NewTask(namespace="billing", handler_name=handler, creator="alice", context={"n": 1}))
    return task.id


async def step_states(tasks: TaskEngine, task_id: str) -> dict[str, StepState]:
    task = await tasks.get(task_id, everywhere)
    return {step.name: step.state for step in task.steps}


async def test_concurrent_claims_lease_each_step_once(tasks: TaskEngine, dispatch: Dispatcher) -> None:
    task_id = await create(tasks, "wide")
    batches = await asyncio.gather(*(dispatch.poll("billing", ["work.wide"], f"w{i}", 3, 0) for i in range(10)))
    leased = [lease.step_name for batch in batches for lease in batch]
    assert sorted(leased) == sorted(f"s{i}" for i in range(20))
    assert all(len(batch) <= 3 for batch in batches)
    task = await tasks.get(task_id, everywhere)
    assert task.state is TaskState.RUNNING
    assert {step.state for step in task.steps} == {StepState.RUNNING}
    assert {step.attempts for step in task.steps} == {1}


async def test_diamond_runs_to_completion(store: SqlStore, tasks: TaskEngine, dispatch: Dispatcher) -> None:
    task_id = await create(tasks, "diamond")
    [fetch] = await dispatch.poll("billing", ALL, "w", 10, 0)
    assert (fetch.step_name, fetch.attempt, fetch.fencing_token, fetch.context) == ("fetch", 1, 1, {"n": 1})
    assert fetch.lease_expire_time > datetime.now(UTC) + timedelta(seconds=200)
    [outcome] = await dispatch.complete("w", [Completion(LeaseRef(fetch.step_id, 1), {"rows": 3})], everywhere)
    assert (outcome.code, outcome.step_state) == (0, StepState.COMPLETED)
    again = await dispatch.complete("w", [Completion(LeaseRef(fetch.step_id, 1), {"rows": 3})], everywhere)
    assert again[0].code == 0  # a retried completion is accepted once
    assert (await step_states(tasks, task_id))["left"] is StepState.READY
    sides = await dispatch.poll("billing", ALL, "w", 10, 0)
    assert sorted(lease.step_name for lease in sides) == ["left", "right"]
    assert all(lease.dependency_results == {"fetch": {"rows": 3}} for lease in sides)
    done = [Completion(LeaseRef(lease.step_id, lease.fencing_token), {"side": lease.step_name}) for lease in sides]
    assert [o.code for o in await dispatch.complete("w", done, everywhere)] == [0, 0]
    [merge] = await dispatch.poll("billing", ALL, "w", 10, 0)
    assert merge.dependency_results == {"left": {"side": "left"}, "right": {"side": "right"}}
    await dispatch.complete("w", [Completion(LeaseRef(merge.step_id, merge.fencing_token), {})], everywhere)
    task = await tasks.get(task_id, everywhere)
    assert task.state is TaskState.COMPLETED
    assert task.complete_time is not None
    query = select(tables.task_events.c.sequence, tables.task_events.c.task_state).where(
        tables.task_events.c.task_id == task_id
    )
    rows = await store.run_in_transaction(lambda c: c.execute(query.order_by(tables.task_events.c.sequence)).all())
    assert [r.sequence for r in rows] == list(range(1, len(rows) + 1))
    assert [r.task_state for r in rows if r.task_state] == ["PENDING", "RUNNING", "COMPLETED"]
    assert task.revision > 1


async def test_stale_and_unknown_leases_change_nothing(tasks: TaskEngine, dispatch: Dispatcher) -> None:
    first, second = await create(tasks, "once"), await create(tasks, "once")
    leases = await dispatch.poll("billing", ["work.once"], "w", 2, 0)
    assert {lease.task_id for lease in leases} == {first, second}
    stale, good = leases
    answers = await dispatch.complete(
        "w",
        [
            Completion(LeaseRef(stale.step_id, stale.fencing_token + 1), {"x": 1}),
            Completion(LeaseRef("no-such-step", 1), {}),
            Completion(LeaseRef(good.step_id, good.fencing_token), {"x": 2}),
        ],
        everywhere,
    )
    assert [a.code for a in answers] == [9, 5, 0]
    stale_task = await tasks.get(stale.task_id, everywhere)
    assert stale_task.steps[0].state is StepState.RUNNING
    assert stale_task.steps[0].result is None
    assert (await tasks.get(good.task_id, everywhere)).state is TaskState.COMPLETED
    failed = await dispatch.fail("w", [Failure(LeaseRef(good.step_id, good.fencing_token), "Boom")], everywhere)
    assert failed[0].code == 9


async def test_retry_waits_for_next_attempt_then_exhausts(tasks: TaskEngine, dispatch: Dispatcher) -> None:
    task_id = await create(tasks, "twice")
    [lease] = await dispatch.poll("billing", ["work.twice"], "w", 1, 0)
    failure = Failure(LeaseRef(lease.step_id, lease.fencing_token), "Timeout", "slow", retryable=True, retry_after=30)
    [outcome] = await dispatch.fail("w", [failure], everywhere)
    assert outcome.step_state is StepState.READY
    assert outcome.next_attempt_at is not None
    assert outcome.next_attempt_at > datetime.now(UTC) + timedelta(seconds=25)
    assert await dispatch.poll("billing", ["work.twice"], "w", 1, 0) == []
    await _due_now(tasks, dispatch, lease.step_id)
    [second] = await dispatch.poll("billing", ["work.twice"], "w", 1, 0)
    assert (second.attempt, second.fencing_token) == (2, 2)
    last = Failure(LeaseRef(second.step_id, 2), "Timeout", "slow again", retryable=True)
    [outcome] = await dispatch.fail("w", [last], everywhere)
    assert outcome.step_state is StepState.FAILED
    task = await tasks.get(task_id, everywhere)
    assert task.state is TaskState.FAILED
    error: Any = task.steps[0].last_error
    assert (error["error_type"], error["message"], error["attempt"]) == ("Timeout", "slow again", 2)


async def test_non_retryable_failure_fails_the_task(tasks: TaskEngine, dispatch: Dispatcher) -> None:
    task_id = await create(tasks, "diamond")
    [fetch] = await dispatch.poll("billing", ALL, "w", 1, 0)
    failure = Failure(LeaseRef(fetch.step_id, 1), "BadInput", "no", retryable=False)
    [outcome] = await dispatch.fail("w", [failure], everywhere)
    assert outcome.step_state is StepState.FAILED
    assert (await tasks.get(task_id, everywhere)).state is TaskState.FAILED
    assert (await step_states(tasks, task_id))["left"] is StepState.PENDING


async def test_expired_lease_is_retried_and_its_token_refused(tasks: TaskEngine, dispatch: Dispatcher) -> None:
    task_id = await create(tasks, "twice")
    [lease] = await dispatch.poll("billing", ["work.twice"], "w", 1, 0)
    assert await dispatch.expire_leases() == []  # not expired yet
    [expired] = await dispatch.expire_leases(datetime.now(UTC) + timedelta(hours=1))
    assert expired.step_state is StepState.READY
    task = await tasks.get(task_id, everywhere)
    assert (task.steps[0].state, task.steps[0].attempts, task.state) == (StepState.READY, 1, TaskState.RUNNING)
    assert task.steps[0].last_error is not None
    assert task.steps[0].last_error["error_type"] == "LeaseExpired"
    ref = LeaseRef(lease.step_id, lease.fencing_token)
    assert (await dispatch.complete("w", [Completion(ref, {})], everywhere))[0].code == 9
    assert (await dispatch.heartbeat("w", [ref], everywhere))[0].code == 9


async def _due_now(tasks: TaskEngine, dispatch: Dispatcher, step_id: str) -> None:
    """Make a delayed step due now, as if its backoff had passed."""
    store: SqlStore = dispatch._store
    past = datetime.now(UTC) - timedelta(seconds=1)
    statement = tables.steps.update().where(tables.steps.c.id == step_id).values(next_attempt_at=past)
    await store.run_in_transaction(lambda c: c.execute(statement))


async def test_waiting_poll_returns_empty_when_the_notifier_closes(store: SqlStore) -> None:
    notifier = Notifier()
    dispatch = Dispatcher(store, notifier, EngineConfig())
    waiting = asyncio.create_task(dispatch.poll("billing", ["work.none"], "w", 1, 30))
    await asyncio.sleep(0.2)
    notifier.close()
    assert await asyncio.wait_for(waiting, 2) == []


async def test_oversized_result_is_refused_alone(tasks: TaskEngine, dispatch: Dispatcher) -> None:
    first, second = await create(tasks, "once"), await create(tasks, "once")
    big, small = await dispatch.poll("billing", ["work.once"], "w", 2, 0)
    answers = await dispatch.complete(
        "w",
        [
            Completion(LeaseRef(big.step_id, big.fencing_token), {"blob": "x"}, result_size=300 * 1024),
            Completion(LeaseRef(small.step_id, small.fencing_token), {"ok": True}),
        ],
        everywhere,
    )
    assert [a.code for a in answers] == [3, 0]
    assert (await tasks.get(big.task_id, everywhere)).steps[0].state is StepState.RUNNING
    assert {first, second} == {big.task_id, small.task_id}


async def test_sweeper_expires_leases_in_the_background(tasks: TaskEngine, store: SqlStore) -> None:
    notifier = Notifier()
    dispatch = Dispatcher(store, notifier, EngineConfig())
    task_id = await create(tasks, "twice")
    [lease] = await dispatch.poll("billing", ["work.twice"], "w", 1, 0)
    past = datetime.now(UTC) - timedelta(seconds=1)
    statement = tables.steps.update().where(tables.steps.c.id == lease.step_id).values(lease_expire_time=past)
    await store.run_in_transaction(lambda c: c.execute(statement))
    waiting = asyncio.create_task(notifier.wait_for_task(task_id, 5))
    await asyncio.sleep(0)
    dispatch.start()
    try:
        assert await waiting
        assert (await step_states(tasks, task_id))["only"] is StepState.READY
    finally:
        await dispatch.stop()
