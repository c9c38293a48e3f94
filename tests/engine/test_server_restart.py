"""`baton serve` SIGKILLed mid-run, then started again on the same SQLite file: every task created before the kill
finishes afterwards, and no step completes twice.

Workers run while the server dies: some steps are completed (acknowledged), some leased and held (the worker
"dies" with the server), some completions are in flight. After the restart the held leases expire (1 s lease
timeout) and are retried as attempt 2+, acknowledged completions stay as they were, and every step of every task
has exactly one COMPLETED event in its log.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from baton.v1 import common_pb2, handlers_pb2, tasks_pb2, workers_pb2
from tests.engine.helpers import as_dict, event_log, get_task, ref, register, seconds, struct, task_stub, worker_stub
from tests.support.process import BatonProcess, spawn_baton

pytestmark = pytest.mark.slow

ADMIN_KEY = "engine-admin-key-0123456789abcdefghijklmnopqrstuvwxyz"
ADMIN = (("x-api-key", ADMIN_KEY),)
NS = "restart"
TASKS = 80
STEPS = ("fetch", "left", "right", "merge")
S = common_pb2


def start_serve(tmp_path: Path, number: int) -> BatonProcess:
    """`python -m baton serve` on tmp_path/baton.db (the same file every time), SERVING before this returns."""
    return spawn_baton(
        tmp_path / "baton.db",
        tmp_path / f"serve-{number}.log",
        cwd=tmp_path,
        api_key=ADMIN_KEY,
        BATON_RATE_LIMIT_ENABLED="false",
        BATON_ACCESS_LOG="false",
        BATON_DRAIN_SECONDS="0",
        BATON_GRACE_SECONDS="1",
    )


@dataclass
class Seen:
    """What the workers saw, across both lives of the server."""

    #: (step_id, fencing_token, attempt, life) of every lease received.
    leases: list[tuple[str, int, int, int]] = field(default_factory=list)
    #: step_id → (result, life) of completions the server acknowledged.
    acknowledged: dict[str, tuple[dict[str, Any], int]] = field(default_factory=dict)
    #: step_id → leases held (never answered) when the server was killed.
    held: dict[str, workers_pb2.Lease] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


async def worker(target: str, name: str, life: int, seen: Seen, stop: asyncio.Event, hold_every: int = 0) -> None:
    """Poll and complete; with `hold_every`, every n-th lease is held and never answered (work in progress)."""
    received = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = worker_stub(channel)
        while not stop.is_set():
            try:
                response = await stub.PollSteps(
                    workers_pb2.PollStepsRequest(
                        namespace=NS,
                        step_handlers=["work.a", "work.b"],
                        worker_id=f"{name}-{life}",
                        max_steps=4,
                        max_wait=seconds(0.3),
                    ),
                    metadata=ADMIN,
                    timeout=5,
                )
                completions = []
                for lease in response.leases:
                    seen.leases.append((lease.step_id, lease.fencing_token, lease.attempt, life))
                    received += 1
                    if hold_every and received % hold_every == 0:
                        seen.held[lease.step_id] = lease
                        continue
                    result = struct(step=lease.step_name, attempt=lease.attempt, token=lease.fencing_token, life=life)
                    completions.append(workers_pb2.StepCompletion(lease=ref(lease), result=result))
                if not completions:
                    continue
                done = await stub.CompleteStep(
                    workers_pb2.CompleteStepRequest(worker_id=f"{name}-{life}", completions=completions),
                    metadata=ADMIN,
                    timeout=5,
                )
                for completion, outcome in zip(completions, done.outcomes, strict=True):
                    if outcome.code != 0:
                        seen.problems.append(f"life {life}: completion refused: {outcome}")
                    else:
                        seen.acknowledged[outcome.step_id] = (as_dict(completion.result), life)
            except grpc.aio.AioRpcError as error:
                if life == 1 and error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    return  # the server was killed under us: what was in flight is in doubt
                raise


async def test_sigkill_then_restart_finishes_every_task_once(tmp_path: Path) -> None:
    first = start_serve(tmp_path, 1)
    try:
        async with grpc.aio.insecure_channel(first.target) as channel:
            policy = handlers_pb2.RetryPolicy(max_attempts=10, initial_backoff=seconds(0.01), max_backoff=seconds(0.05))

            def step(name: str, handler: str, *depends_on: str) -> handlers_pb2.StepTemplate:
                return handlers_pb2.StepTemplate(
                    name=name,
                    step_handler=handler,
                    depends_on=depends_on,
                    retry_policy=policy,
                    lease_timeout=seconds(1),
                )

            await register(
                channel,
                ADMIN,
                NS,
                "diamond",
                [
                    step("fetch", "work.a"),
                    step("left", "work.b", "fetch"),
                    step("right", "work.a", "fetch"),
                    step("merge", "work.b", "left", "right"),
                ],
            )
            tasks = task_stub(channel)
            created = await asyncio.gather(
                *(
                    tasks.CreateTask(
                        tasks_pb2.CreateTaskRequest(
                            namespace=NS, handler_name="diamond", context=struct(n=i), request_id=f"restart-{i}"
                        ),
                        metadata=ADMIN,
                        timeout=10,
                    )
                    for i in range(TASKS)
                )
            )
        task_ids = [task.id for task in created]
        assert len(set(task_ids)) == TASKS

        # Life 1: three workers, one of them holding every 3rd lease; SIGKILL once a third of the steps are done.
        seen, stop = Seen(), asyncio.Event()
        workers = [
            asyncio.create_task(worker(first.target, f"w{i}", 1, seen, stop, hold_every=3 if i == 0 else 0))
            for i in range(3)
        ]
        end = time.monotonic() + 30
        while len(seen.acknowledged) < TASKS * len(STEPS) // 3:
            assert time.monotonic() < end, "workers made no progress before the kill"
            assert not any(w.done() for w in workers), [w.exception() for w in workers if w.done()]
            await asyncio.sleep(0.01)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=10)
        results = await asyncio.wait_for(asyncio.gather(*workers, return_exceptions=True), 15)
        assert [r for r in results if r is not None] == []
        before_kill = dict(seen.acknowledged)
        held = dict(seen.held)
        assert held, "some leases should be held when the server dies"
    finally:
        if first.proc.poll() is None:
            first.proc.kill()
            first.proc.wait(timeout=10)

    # Life 2: the same file; workers run until every task is COMPLETED.
    second = start_serve(tmp_path, 2)
    try:
        stop = asyncio.Event()
        workers = [asyncio.create_task(worker(second.target, f"w{i}", 2, seen, stop)) for i in range(3)]
        async with grpc.aio.insecure_channel(second.target) as channel:
            end = time.monotonic() + 60
            while True:
                final = [await get_task(channel, ADMIN, task_id) for task_id in task_ids]
                if all(task.state == S.TASK_STATE_COMPLETED for task in final):
                    break
                assert not any(w.done() for w in workers), [w.exception() for w in workers if w.done()]
                assert time.monotonic() < end, [t for t in final if t.state != S.TASK_STATE_COMPLETED][:3]
                await asyncio.sleep(0.2)
            stop.set()
            assert await asyncio.gather(*workers) == [None] * 3
            logs = {task_id: await event_log(channel, ADMIN, task_id) for task_id in task_ids}
            final = [await get_task(channel, ADMIN, task_id) for task_id in task_ids]
    finally:
        stop.set()
        second.proc.kill()
        second.proc.wait(timeout=10)

    assert seen.problems == []
    assert [(t.id, t.state) for t in final] == [(task_id, S.TASK_STATE_COMPLETED) for task_id in task_ids]
    # No (step, token) leased twice, across both lives of the server.
    assert [k for k, n in Counter((s, t) for s, t, _a, _l in seen.leases).items() if n > 1] == []
    leased_after = {s: a for s, _t, a, life in seen.leases if life == 2}
    # Leases held when the server died expired after the restart and were leased again.
    assert set(held) & set(leased_after)
    for task in final:
        completed_events = Counter(e.step_name for e in logs[task.id] if e.step_state == S.STEP_STATE_COMPLETED)
        running_events = Counter(e.step_name for e in logs[task.id] if e.step_state == S.STEP_STATE_RUNNING)
        assert completed_events == Counter(STEPS), (task.id, completed_events)
        for step in task.steps:
            result = as_dict(step.result)
            assert step.state == S.STEP_STATE_COMPLETED
            assert result["attempt"] == step.attempts == running_events[step.name], (step, running_events)
            if step.id in before_kill:  # acknowledged before the kill: kept, never run again
                assert result == before_kill[step.id][0]
                assert step.id not in leased_after
            if step.id in held:  # held by a worker that never answered: its lease expired and it ran again
                assert step.attempts > held[step.id].attempt
                expired = [
                    e
                    for e in logs[task.id]
                    if e.step_name == step.name
                    and e.attempt == held[step.id].attempt
                    and e.previous_step_state == S.STEP_STATE_RUNNING
                ]
                assert [(e.step_state, e.actor) for e in expired] == [(S.STEP_STATE_READY, "lease-expiry")]
