"""The task engine on every backend: creation with steps and events, idempotency, cancellation, pages and filters."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from baton.config import EngineConfig
from baton.domain.handlers import HandlerDefinition, StepDefinition
from baton.domain.states import StepState, TaskState
from baton.engine.handlers import HandlerRegistry
from baton.engine.tasks import NewTask, TaskEngine
from baton.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from baton.store import SqlStore, tables

DIAMOND = (
    StepDefinition("fetch", "work.fetch"),
    StepDefinition("left", "work.left", depends_on=("fetch",)),
    StepDefinition("right", "work.right", depends_on=("fetch",)),
    StepDefinition("merge", "work.merge", depends_on=("left", "right")),
)


def everywhere(_namespace: str) -> bool:
    return True


@pytest.fixture
async def engine(store: SqlStore) -> TaskEngine:
    registry = HandlerRegistry.from_config(store, EngineConfig())
    await registry.register(HandlerDefinition("billing", "invoice", "1.0.0", DIAMOND))
    await registry.register(HandlerDefinition("billing", "refund", "1.0.0", DIAMOND[:1]))
    return TaskEngine.from_config(store, registry, EngineConfig())


def new_task(**fields: Any) -> NewTask:
    values: dict[str, Any] = {"namespace": "billing", "handler_name": "invoice", "creator": "alice"}
    return NewTask(**(values | fields))


async def events(store: SqlStore, task_id: str) -> list[Any]:
    query = select(tables.task_events).where(tables.task_events.c.task_id == task_id)
    return await store.run_in_transaction(lambda c: c.execute(query.order_by(tables.task_events.c.sequence)).all())


async def test_create_then_get(store: SqlStore, engine: TaskEngine) -> None:
    created = await engine.create(
        new_task(
            context={"amount": 3},
            tags=("a", "b"),
            priority=5,
            call_request_id="req-1",
            request_id="k1",
            trace_context={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        )
    )
    assert created.trace_context["traceparent"].startswith("00-0af7")
    assert created.state is TaskState.PENDING
    assert (created.handler_version, created.correlation_id, created.etag) == ("1.0.0", "req-1", "1")
    assert [s.name for s in created.steps] == ["fetch", "left", "right", "merge"]
    states = {s.name: s.state for s in created.steps}
    assert states == {"fetch": StepState.READY, "left": StepState.PENDING, "right": StepState.PENDING,
                      "merge": StepState.PENDING}  # fmt: skip
    fetch = created.steps[0]
    assert fetch.ready_time is not None
    assert fetch.next_attempt_at == fetch.ready_time
    assert created.steps[3].depends_on == ("left", "right")
    assert created.steps[3].max_attempts == 3
    assert await engine.get(created.id, everywhere) == created
    rows = await events(store, created.id)
    assert [r.sequence for r in rows] == [1, 2]
    assert (rows[0].task_state, rows[1].step_name, rows[1].step_state) == ("PENDING", "fetch", "READY")
    counters = await store.run_in_transaction(
        lambda c: c.execute(select(tables.steps.c.name, tables.steps.c.remaining_dependencies)).all()
    )
    assert dict(counters) == {"fetch": 0, "left": 1, "right": 1, "merge": 2}


async def test_unknown_handler_and_bad_input(engine: TaskEngine) -> None:
    with pytest.raises(NotFound):
        await engine.create(new_task(handler_name="missing"))
    with pytest.raises(NotFound):
        await engine.create(new_task(handler_version="9.9.9"))
    with pytest.raises(InvalidArgument) as caught:
        await engine.create(new_task(tags=("x" * 65, "ok", "ok"), priority=2000, request_id="bad id"))
    fields = {v.field for v in caught.value.field_violations}
    assert fields == {"tags[0]", "tags[2]", "priority", "request_id"}


async def test_get_hides_other_namespaces(engine: TaskEngine) -> None:
    created = await engine.create(new_task())
    with pytest.raises(NotFound):
        await engine.get(created.id, lambda namespace: namespace == "shipping")
    with pytest.raises(NotFound):
        await engine.get("not-a-uuid", everywhere)


async def test_same_request_id_returns_the_same_task(engine: TaskEngine) -> None:
    first = await engine.create(new_task(request_id="order-1", context={"n": 1}))
    again = await engine.create(new_task(request_id="order-1", context={"n": 1}))
    assert again.id == first.id
    with pytest.raises(AlreadyExists) as caught:
        await engine.create(new_task(request_id="order-1", context={"n": 2}))
    assert caught.value.reason == "REQUEST_ID_REUSED"
    other_caller = await engine.create(new_task(request_id="order-1", context={"n": 1}, creator="bob"))
    assert other_caller.id != first.id


async def test_concurrent_creates_with_one_request_id_make_one_task(store: SqlStore, engine: TaskEngine) -> None:
    created = await asyncio.gather(*(engine.create(new_task(request_id="race")) for _ in range(5)))
    assert len({task.id for task in created}) == 1
    count = await store.run_in_transaction(lambda c: len(c.execute(select(tables.tasks.c.id)).all()))
    assert count == 1


async def test_cancel(store: SqlStore, engine: TaskEngine) -> None:
    created = await engine.create(new_task())
    fetch_id = created.steps[0].id
    await store.run_in_transaction(
        lambda c: c.execute(
            tables.steps.update().where(tables.steps.c.id == fetch_id).values(state="RUNNING", attempts=1)
        )
    )
    cancelled = await engine.cancel(created.id, everywhere, actor="alice", reason="no longer needed")
    assert cancelled.state is TaskState.CANCELLED
    assert cancelled.etag == "2"
    assert cancelled.complete_time is not None
    states = {s.name: s.state for s in cancelled.steps}
    assert states["fetch"] is StepState.RUNNING  # told on its next heartbeat
    assert {states["left"], states["right"], states["merge"]} == {StepState.CANCELLED}
    rows = await events(store, created.id)
    assert [r.sequence for r in rows] == list(range(1, 7))
    assert rows[-1].task_state == "CANCELLED"
    assert rows[-1].reason == "no longer needed"
    again = await engine.cancel(created.id, everywhere, actor="alice")
    assert again == cancelled


async def test_cancel_checks_etag_finished_tasks_and_namespaces(store: SqlStore, engine: TaskEngine) -> None:
    from baton.errors import Aborted

    created = await engine.create(new_task())
    with pytest.raises(Aborted):
        await engine.cancel(created.id, everywhere, actor="alice", etag="7")
    with pytest.raises(NotFound):
        await engine.cancel(created.id, lambda ns: ns == "shipping", actor="alice")
    done = await engine.create(new_task(handler_name="refund"))
    await store.run_in_transaction(
        lambda c: c.execute(tables.tasks.update().where(tables.tasks.c.id == done.id).values(state="COMPLETED"))
    )
    with pytest.raises(FailedPrecondition):
        await engine.cancel(done.id, everywhere, actor="alice")
    assert (await engine.cancel(created.id, everywhere, actor="alice", etag="1")).state is TaskState.CANCELLED


async def test_list_newest_first_with_pages_and_filters(engine: TaskEngine) -> None:
    made = [await engine.create(new_task(tags=("even",) if i % 2 == 0 else ())) for i in range(5)]
    made.append(await engine.create(new_task(handler_name="refund")))
    newest_first = [t.id for t in reversed(made)]

    seen: list[str] = []
    token = ""
    while True:
        page, token = await engine.list_tasks("billing", page_size=2, page_token=token)
        assert len(page) <= 2
        assert all(not task.steps for task in page)
        seen += [task.id for task in page]
        if not token:
            break
    assert seen == newest_first

    page, _ = await engine.list_tasks("billing", filter_text='handler_name = "refund"')
    assert [t.id for t in page] == [made[-1].id]
    page, _ = await engine.list_tasks("billing", filter_text='tags:"even" AND state = TASK_STATE_PENDING')
    assert [t.id for t in page] == [made[4].id, made[2].id, made[0].id]
    page, _ = await engine.list_tasks("billing", filter_text="state = RUNNING")
    assert page == []
    since = made[3].create_time.isoformat()
    page, _ = await engine.list_tasks("billing", filter_text=f'create_time >= "{since}"', with_steps=True)
    assert {t.id for t in page} >= {made[3].id, made[4].id, made[5].id}
    assert all(len(t.steps) in (1, 4) for t in page)
    assert (await engine.list_tasks("shipping"))[0] == []


async def test_list_rejects_bad_filters_and_foreign_tokens(engine: TaskEngine) -> None:
    for _ in range(3):
        await engine.create(new_task())
    _, token = await engine.list_tasks("billing", page_size=1)
    with pytest.raises(InvalidArgument) as caught:
        await engine.list_tasks("billing", page_size=1, page_token=token, filter_text="state = RUNNING")
    assert caught.value.field_violations[0].field == "page_token"
    for bad in ("priority > 3", "state = DONE", 'create_time > "yesterday"', "state = RUNNING OR", "tags"):
        with pytest.raises(InvalidArgument) as caught:
            await engine.list_tasks("billing", filter_text=bad)
        assert caught.value.field_violations[0].field == "filter", bad


async def test_batch_is_all_or_nothing(store: SqlStore, engine: TaskEngine) -> None:
    entries = [new_task(namespace="", request_id="b-1"), new_task(handler_name="refund"), new_task(request_id="b-1")]
    created = await engine.create_batch("billing", entries)
    assert [t.handler_name for t in created] == ["invoice", "refund", "invoice"]
    assert created[0].id == created[2].id  # the same request_id within the batch: one task
    assert await engine.create_batch("billing", []) == []

    count_before = await store.run_in_transaction(lambda c: len(c.execute(select(tables.tasks.c.id)).all()))
    with pytest.raises(InvalidArgument) as caught:
        await engine.create_batch("billing", [new_task(), new_task(namespace="shipping"), new_task(priority=-5000)])
    assert {v.field for v in caught.value.field_violations} == {"requests[1].namespace"}
    with pytest.raises(InvalidArgument) as caught:
        await engine.create_batch("billing", [new_task(), new_task(priority=-5000)])
    assert {v.field for v in caught.value.field_violations} == {"requests[1].priority"}
    with pytest.raises(AlreadyExists):
        await engine.create_batch("billing", [new_task(request_id="fresh"), new_task(request_id="b-1", priority=1)])
    with pytest.raises(InvalidArgument):
        await engine.create_batch("billing", [new_task()] * 1001)
    count_after = await store.run_in_transaction(lambda c: len(c.execute(select(tables.tasks.c.id)).all()))
    assert count_after == count_before
