"""A poll that starts while another poll's claim of its handlers waits for the writer joins that claim: when the
claim drained the queue the poll waits (for a hint, a hand-over, its soonest retry, or DRAINED_TTL) without a claim
of its own; a step no notifier tells of is still leased within DRAINED_TTL (SQLite, in process)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from baton.config import EngineConfig
from baton.domain.handlers import HandlerDefinition, StepDefinition
from baton.engine import dispatch as dispatch_module
from baton.engine.dispatch import Dispatcher
from baton.engine.handlers import HandlerRegistry
from baton.engine.notify import Notifier
from baton.engine.tasks import NewTask, TaskEngine
from baton.store import SqlStore

HANDLER = "work.drained"


@pytest.fixture
def store(sqlite_thread_store: SqlStore) -> SqlStore:
    """Writes in the writer thread: these tests hold a claim's transaction open mid-statement."""
    return sqlite_thread_store


@pytest.fixture
async def engines(store: SqlStore) -> AsyncIterator[tuple[TaskEngine, Dispatcher, HandlerRegistry]]:
    notifier = Notifier()
    dispatch = Dispatcher(store, notifier, EngineConfig())
    registry = HandlerRegistry.from_config(store, EngineConfig())
    await registry.register(HandlerDefinition("billing", "drained", "1.0.0", (StepDefinition("only", HANDLER),)))
    yield TaskEngine.from_config(store, registry, EngineConfig(), notifier, eager=dispatch), dispatch, registry
    await dispatch.stop()


@pytest.fixture
def claims(store: SqlStore) -> Iterator[list[str]]:
    """The claim statements run (`UPDATE … RETURNING`), as they run."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("UPDATE steps") and "RETURNING" in statement:
            seen.append(statement)

    for engine in store.sync_engines:
        event.listen(engine, "before_cursor_execute", count)
    yield seen
    for engine in store.sync_engines:
        event.remove(engine, "before_cursor_execute", count)


def _new() -> NewTask:
    return NewTask(namespace="billing", handler_name="drained", creator="alice")


async def _waiting(dispatch: Dispatcher) -> None:
    for _ in range(500):
        if dispatch.handoffs.waiting("billing"):
            return
        await asyncio.sleep(0.002)
    raise AssertionError("the poll never started waiting")


@contextmanager
def writer_held(store: SqlStore, prefix: str) -> Iterator[threading.Event]:
    """Hold the first statement starting with `prefix` in the writer thread until the event is set, so that
    transactions submitted meanwhile queue behind it."""
    release, holding = threading.Event(), threading.Event()

    def hold(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith(prefix) and not holding.is_set():
            holding.set()
            release.wait(10)

    for engine in store.sync_engines:
        event.listen(engine, "before_cursor_execute", hold)
    try:
        yield release
    finally:
        release.set()
        for engine in store.sync_engines:
            event.remove(engine, "before_cursor_execute", hold)


async def _queued_polls(
    store: SqlStore, tasks: TaskEngine, dispatch: Dispatcher, max_steps: int, count: int = 1
) -> tuple[list[asyncio.Task[list[Any]]], list[Any]]:
    """`count` tasks created in one held transaction; while it is held, poll w1 queues its claim behind it and
    poll w2 starts (and joins w1's claim); then the transaction goes on."""
    with writer_held(store, "INSERT INTO tasks") as release:
        batch = [_new() for _ in range(count)]
        creating = asyncio.create_task(tasks.create_batch("billing", batch))
        await asyncio.sleep(0.05)
        first = asyncio.create_task(dispatch.poll("billing", [HANDLER], "w1", max_steps, 5.0))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(dispatch.poll("billing", [HANDLER], "w2", max_steps, 5.0))
        await asyncio.sleep(0.05)
        release.set()
        created = await creating
    return [first, second], created


async def test_a_poll_joining_a_claim_that_drained_the_queue_waits_and_gets_the_next_step_handed(
    store: SqlStore, engines: tuple[TaskEngine, Dispatcher, HandlerRegistry], claims: list[str]
) -> None:
    tasks, dispatch, _ = engines
    (first, second), (created,) = await _queued_polls(store, tasks, dispatch, 10)
    assert [lease.task_id for lease in await first] == [created.id]  # 1 of 10: the queue is drained
    await _waiting(dispatch)
    assert not second.done()
    assert len(claims) == 1, "the second poll claimed although the first left nothing"

    handed_to_it = await tasks.create(_new())  # handed to the waiting poll inside the creating transaction
    assert [lease.task_id for lease in await asyncio.wait_for(second, 5)] == [handed_to_it.id]
    assert len(claims) == 1


async def test_a_poll_joining_a_full_claim_claims_itself(
    store: SqlStore, engines: tuple[TaskEngine, Dispatcher, HandlerRegistry], claims: list[str]
) -> None:
    tasks, dispatch, _ = engines
    (first, second), created = await _queued_polls(store, tasks, dispatch, 2, count=3)
    got = [lease.task_id for lease in await first] + [lease.task_id for lease in await asyncio.wait_for(second, 5)]
    assert sorted(got) == sorted(task.id for task in created)  # 2 of 2 may leave more: the second looked
    assert len(claims) == 2


async def test_a_step_no_notifier_tells_of_is_leased_within_the_ttl(
    store: SqlStore, engines: tuple[TaskEngine, Dispatcher, HandlerRegistry], claims: list[str]
) -> None:
    tasks, dispatch, registry = engines
    (first, second), _ = await _queued_polls(store, tasks, dispatch, 10)
    assert len(await first) == 1
    await _waiting(dispatch)

    # Another process writing the same file: its READY step reaches no notifier of ours.
    elsewhere = TaskEngine.from_config(store, registry, EngineConfig(), Notifier())
    started = time.monotonic()
    unseen = await elsewhere.create(_new())
    leases = await asyncio.wait_for(second, 5)
    waited = time.monotonic() - started
    assert [lease.task_id for lease in leases] == [unseen.id]
    assert waited < dispatch_module.DRAINED_TTL + 0.5, f"waited {waited:.2f} s for a step that was READY"
    assert len(claims) == 2
