"""Eager dispatch (SQLite): the hand-over from a creating transaction to a waiting poll, and a poll that goes away
while a transaction holds it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, select

from baton.config import EngineConfig
from baton.domain.handlers import HandlerDefinition, StepDefinition
from baton.engine.dispatch import Dispatcher
from baton.engine.handlers import HandlerRegistry
from baton.engine.notify import Notifier
from baton.engine.tasks import NewTask, TaskEngine
from baton.store import SqlStore, tables

HANDLER = "work.eager"


@pytest.fixture
def store(sqlite_thread_store: SqlStore) -> SqlStore:
    """Writes in the writer thread: these tests hold a claim's transaction open mid-statement."""
    return sqlite_thread_store


@pytest.fixture
async def engines(store: SqlStore) -> AsyncIterator[tuple[TaskEngine, Dispatcher]]:
    notifier = Notifier()
    dispatch = Dispatcher(store, notifier, EngineConfig())
    registry = HandlerRegistry.from_config(store, EngineConfig())
    await registry.register(HandlerDefinition("billing", "eager", "1.0.0", (StepDefinition("only", HANDLER),)))
    yield TaskEngine.from_config(store, registry, EngineConfig(), notifier, eager=dispatch), dispatch
    await dispatch.stop()


async def waiting_poll(dispatch: Dispatcher, worker_id: str) -> asyncio.Task[list[object]]:
    poll = asyncio.create_task(dispatch.poll("billing", [HANDLER], worker_id, 1, 30.0))
    for _ in range(500):
        if dispatch.handoffs.waiting("billing"):
            return poll  # type: ignore[return-value]
        await asyncio.sleep(0.002)
    raise AssertionError("the poll never started waiting")


async def step_row(store: SqlStore, task_id: str) -> tuple[str, int]:
    query = select(tables.steps.c.state, tables.steps.c.attempts).where(tables.steps.c.task_id == task_id)
    row = await store.run_read(lambda connection: connection.execute(query).one())
    return row.state, row.attempts


async def test_a_waiting_poll_gets_the_new_step_before_the_creator_gets_its_answer(
    engines: tuple[TaskEngine, Dispatcher],
) -> None:
    tasks, dispatch = engines
    poll = await waiting_poll(dispatch, "w1")
    order: list[str] = []
    poll.add_done_callback(lambda _: order.append("poll"))
    creating = asyncio.create_task(tasks.create(NewTask(namespace="billing", handler_name="eager", creator="alice")))
    creating.add_done_callback(lambda _: order.append("create"))

    task = await creating
    leases = await poll

    assert [lease.task_id for lease in leases] == [task.id]  # type: ignore[attr-defined]
    assert order == ["poll", "create"]


async def test_leases_claimed_for_a_poll_that_went_away_are_handed_back(
    store: SqlStore, engines: tuple[TaskEngine, Dispatcher]
) -> None:
    tasks, dispatch = engines
    # A first task puts the handler in the cache (so creating needs no read before it reserves polls); a first
    # worker takes its step.
    await tasks.create(NewTask(namespace="billing", handler_name="eager", creator="alice"))
    assert len(await dispatch.poll("billing", [HANDLER], "first", 1, 5.0)) == 1
    poll = await waiting_poll(dispatch, "gone")
    creating = asyncio.create_task(tasks.create(NewTask(namespace="billing", handler_name="eager", creator="alice")))
    for _ in range(100):  # the creating call reserves the poll on the loop, then its transaction runs in a thread
        await asyncio.sleep(0)
        if not dispatch.handoffs.waiting("billing"):
            break
    assert not dispatch.handoffs.waiting("billing"), "the creating call never reserved the poll"
    poll.cancel()  # the worker goes away while the transaction claims a step for it

    task = await creating
    await dispatch.stop()  # waits for the hand-back

    assert await step_row(store, task.id) == ("READY", 0), "the step is READY again and the attempt refunded"
    reasons = await store.run_read(
        lambda connection: [
            row.reason
            for row in connection.execute(
                select(tables.task_events.c.reason).where(tables.task_events.c.task_id == task.id)
            )
        ]
    )
    assert "handed back by a worker shutting down" in reasons, reasons

    again = await dispatch.poll("billing", [HANDLER], "w2", 1, 5.0)
    assert [(lease.task_id, lease.attempt) for lease in again] == [(task.id, 1)]


async def test_leases_claimed_for_a_poll_cancelled_during_its_claim_are_handed_back(
    store: SqlStore, engines: tuple[TaskEngine, Dispatcher]
) -> None:
    tasks, dispatch = engines
    task = await tasks.create(NewTask(namespace="billing", handler_name="eager", creator="alice"))  # READY, no poll
    claiming, release = threading.Event(), threading.Event()

    def hold_the_claim(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("UPDATE steps SET state") and not claiming.is_set():  # the claim, in its transaction
            claiming.set()
            release.wait(10)

    # Listeners are removed only at the end: removing one while the writer thread runs it would fail the claim.
    for engine in store.sync_engines:
        event.listen(engine, "before_cursor_execute", hold_the_claim)
    try:
        poll = asyncio.create_task(dispatch.poll("billing", [HANDLER], "gone", 1, 5.0))
        assert await asyncio.to_thread(claiming.wait, 10), "the poll never claimed"
        poll.cancel()  # the worker goes away while its claim transaction runs
        with pytest.raises(asyncio.CancelledError):
            await poll
        release.set()
        for _ in range(200):  # the claim commits, then its lease is handed back
            await asyncio.sleep(0.01)
            if await step_row(store, task.id) == ("READY", 0):
                break
        await dispatch.stop()

        assert await step_row(store, task.id) == ("READY", 0), "the step is READY again and the attempt refunded"
        again = await dispatch.poll("billing", [HANDLER], "w2", 1, 5.0)
        assert [(lease.task_id, lease.attempt) for lease in again] == [(task.id, 1)]
    finally:
        release.set()
        for engine in store.sync_engines:
            event.remove(engine, "before_cursor_execute", hold_the_claim)
