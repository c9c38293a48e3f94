"""TaskService.WatchTask through the real server: the snapshot first, replay after a sequence (0 replays none),
live events until the task finishes, resuming without gaps or duplicates, shutdown, and bad input."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from baton.engine.task_sql import TaskRecord
from baton.engine.watch import TaskEventRecord, TaskWatcher
from baton.server.app import BatonServer
from baton.store import open_store
from baton.v1 import common_pb2, tasks_pb2
from tests.integration.test_task_service import register_diamond, stub
from tests.support.accounts import Metadata, create_account, rich_error
from tests.support.server import RunningServer, make_config

#: Shorter than the watcher's re-check interval (15 s): a test that passes was woken, not re-checked.
TIMEOUT = 10
#: Events of a new diamond task: the task created, then its first step ready.
CREATED, FETCH_READY = 1, 2
CANCELLED = common_pb2.TASK_STATE_CANCELLED
STEP_CANCELLED = common_pb2.STEP_STATE_CANCELLED


async def create(running: RunningServer, namespace: str = "payments") -> tasks_pb2.Task:
    request = tasks_pb2.CreateTaskRequest(namespace=namespace, handler_name="diamond")
    task: tasks_pb2.Task = await stub(running).CreateTask(request, metadata=running.admin, timeout=TIMEOUT)
    return task


def watch(running: RunningServer, task_id: str, after_sequence: int = 0, metadata: Metadata | None = None) -> Any:
    request = tasks_pb2.WatchTaskRequest(id=task_id, after_sequence=after_sequence)
    return stub(running).WatchTask(request, metadata=metadata or running.admin, timeout=TIMEOUT)


async def cancel(running: RunningServer, task_id: str) -> tasks_pb2.Task:
    request = tasks_pb2.CancelTaskRequest(id=task_id, reason="watch test")
    task: tasks_pb2.Task = await stub(running).CancelTask(request, metadata=running.admin, timeout=TIMEOUT)
    return task


async def rest(call: Any) -> list[tasks_pb2.WatchTaskResponse]:
    """The remaining messages of a watch, once it has ended with OK (read() only: gRPC forbids mixing it with
    iteration on one call)."""
    messages = []
    while (message := await call.read()) is not grpc.aio.EOF:
        messages.append(message)
    assert await call.code() == grpc.StatusCode.OK
    return messages


def events(messages: list[tasks_pb2.WatchTaskResponse]) -> list[tasks_pb2.TaskEvent]:
    assert all(message.WhichOneof("kind") == "event" for message in messages)
    return [message.event for message in messages]


def assert_cancellation(got: list[tasks_pb2.TaskEvent], task_id: str) -> None:
    """Events 3..7 of a cancelled diamond: its four steps, then the task."""
    assert [e.sequence for e in got] == [3, 4, 5, 6, 7]
    assert [e.step_name for e in got] == ["fetch", "left", "right", "merge", ""]
    assert [e.step_state for e in got[:4]] == [STEP_CANCELLED] * 4
    assert got[0].previous_step_state == common_pb2.STEP_STATE_READY
    last = got[-1]
    assert (last.previous_task_state, last.task_state, last.reason) == (
        common_pb2.TASK_STATE_PENDING,
        CANCELLED,
        "watch test",
    )
    assert all(e.task_id == task_id and e.actor and e.create_time.seconds for e in got)


async def test_snapshot_then_live_events_until_cancelled(server: RunningServer) -> None:
    await register_diamond(server)
    task = await create(server)
    call = watch(server, task.id)
    first = await call.read()
    assert first.WhichOneof("kind") == "snapshot"
    got = await stub(server).GetTask(tasks_pb2.GetTaskRequest(id=task.id), metadata=server.admin, timeout=TIMEOUT)
    assert first.snapshot == got
    assert len(first.snapshot.steps) == 4

    await cancel(server, task.id)
    assert_cancellation(events(await rest(call)), task.id)  # 0 replays none: no creation events


async def test_replay_after_a_sequence_then_live(server: RunningServer) -> None:
    await register_diamond(server)
    task = await create(server)
    call = watch(server, task.id, after_sequence=CREATED)
    assert (await call.read()).snapshot.id == task.id
    replayed = (await call.read()).event
    assert (replayed.sequence, replayed.step_name, replayed.step_state) == (
        FETCH_READY,
        "fetch",
        common_pb2.STEP_STATE_READY,
    )
    await cancel(server, task.id)
    assert_cancellation(events(await rest(call)), task.id)


async def test_resume_gets_exactly_the_remaining_events(server: RunningServer) -> None:
    await register_diamond(server)
    task = await create(server)
    call = watch(server, task.id)
    await call.read()
    await cancel(server, task.id)
    seen = [(await call.read()).event for _ in range(2)]
    assert [e.sequence for e in seen] == [3, 4]
    call.cancel()  # the client drops the stream

    resumed = watch(server, task.id, after_sequence=seen[-1].sequence)
    snapshot = await resumed.read()
    assert snapshot.snapshot.state == CANCELLED
    remaining = events(await rest(resumed))
    assert [e.sequence for e in remaining] == [5, 6, 7]
    assert remaining[-1].task_state == CANCELLED


async def test_finished_task_gets_snapshot_and_replay_only(server: RunningServer) -> None:
    await register_diamond(server)
    task = await create(server)
    await cancel(server, task.id)

    only = await rest(watch(server, task.id))
    assert [m.WhichOneof("kind") for m in only] == ["snapshot"]
    assert only[0].snapshot.state == CANCELLED

    replay = await rest(watch(server, task.id, after_sequence=FETCH_READY))
    assert replay[0].snapshot.id == task.id
    assert_cancellation(events(replay[1:]), task.id)
    everything = await rest(watch(server, task.id, after_sequence=7))
    assert len(everything) == 1


def everyone(_namespace: str) -> bool:
    return True


def sequences(items: Sequence[TaskRecord | TaskEventRecord]) -> list[int]:
    assert all(isinstance(item, TaskEventRecord) for item in items)
    return [item.sequence for item in items if isinstance(item, TaskEventRecord)]


async def test_events_are_read_in_batches(server: RunningServer) -> None:
    await register_diamond(server)
    task = await create(server)
    watcher = TaskWatcher(server.server.store, server.server.runtime.notifier, batch_size=2)
    live = watcher.watch(task.id, everyone, after_sequence=CREATED)
    assert isinstance(await anext(live), TaskRecord)
    await cancel(server, task.id)
    assert sequences([item async for item in live]) == [2, 3, 4, 5, 6, 7]

    replay = [item async for item in watcher.watch(task.id, everyone, after_sequence=CREATED)]
    assert isinstance(replay[0], TaskRecord)
    assert replay[0].state.value == "CANCELLED"
    assert sequences(replay[1:]) == [2, 3, 4, 5, 6, 7]


async def test_a_missed_wake_up_costs_one_recheck(server: RunningServer) -> None:
    """A write that wakes nobody (here the engine's cancel, without the servicer's notification; in production a
    write on another replica) is found by the periodic re-check."""
    await register_diamond(server)
    task = await create(server)
    watcher = TaskWatcher(server.server.store, server.server.runtime.notifier, recheck_seconds=0.2)
    live = watcher.watch(task.id, everyone)
    assert isinstance(await anext(live), TaskRecord)
    reading = asyncio.create_task(asyncio.wait_for(anext(live), TIMEOUT))
    await asyncio.sleep(0.05)  # the watcher is waiting now
    await server.server.runtime.tasks.cancel(task.id, everyone, actor="test", reason="watch test")
    first = await reading
    assert isinstance(first, TaskEventRecord)
    assert sequences([first, *[item async for item in live]]) == [3, 4, 5, 6, 7]


async def test_shutdown_ends_an_open_watch_cleanly(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    store = await open_store(config.storage, auto_migrate=True)
    baton = await BatonServer.create(config, store)
    port = await baton.start(host="127.0.0.1", port=0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    running = RunningServer(server=baton, target=f"127.0.0.1:{port}", channel=channel, config=config)
    try:
        await register_diamond(running)
        task = await create(running)
        call = watch(running, task.id)
        assert (await call.read()).snapshot.id == task.id
        stopping = asyncio.create_task(baton.stop(grace=2, drain=0))
        assert await asyncio.wait_for(rest(call), TIMEOUT) == []
        await stopping
    finally:
        await channel.close()
        await store.close()


async def test_bad_input_and_foreign_namespaces(server: RunningServer) -> None:
    await register_diamond(server, "shipping")
    await register_diamond(server, "payments")
    developer = await create_account(server, "dev-payments", "developer@payments")
    shipping = await create(server, "shipping")
    own = await create(server, "payments")

    foreign = await rich_error(rest(watch(server, shipping.id, metadata=developer.metadata)), grpc.StatusCode.NOT_FOUND)
    unknown = watch(server, "0190f5d2-7c1e-7abc-8def-0123456789ab", metadata=developer.metadata)
    assert (await rich_error(rest(unknown), grpc.StatusCode.NOT_FOUND)).info.reason == foreign.info.reason
    await rich_error(rest(watch(server, "not-a-uuid")), grpc.StatusCode.NOT_FOUND)

    empty = await rich_error(rest(watch(server, "")), grpc.StatusCode.INVALID_ARGUMENT)
    assert list(empty.violations) == ["id"]
    negative = await rich_error(rest(watch(server, own.id, after_sequence=-1)), grpc.StatusCode.INVALID_ARGUMENT)
    assert list(negative.violations) == ["after_sequence"]

    mine = watch(server, own.id, metadata=developer.metadata)
    assert (await mine.read()).snapshot.id == own.id
    mine.cancel()
