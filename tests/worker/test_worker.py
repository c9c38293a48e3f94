"""A Worker against the real server: a DAG run to completion, sync and async handlers, retries, cancellation,
graceful shutdown, bounded concurrency, batched outcomes and log correlation."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from typing import Any

import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from baton.client import AsyncClient
from baton.worker import PermanentError, RetryableError, StepContext, Worker, step
from baton_betterproto.baton.v1 import StepState, TaskState
from tests.worker.conftest import NS, finished, register, template


def step_of(task: Any, name: str) -> Any:
    return next(s for s in task.steps if s.name == name)


async def test_diamond_with_sync_and_async_handlers(client: AsyncClient) -> None:
    await register(
        client,
        "diamond",
        template("fetch", "work.fetch"),
        template("left", "work.side", "fetch"),
        template("right", "work.side", "fetch"),
        template("merge", "work.merge", "left", "right"),
    )

    @step("work.fetch")
    async def fetch(ctx: StepContext) -> dict[str, Any]:
        return {"amount": ctx.context["amount"]}

    @step("work.side")
    def side(ctx: StepContext) -> dict[str, Any]:  # sync: runs in the thread pool
        assert threading.current_thread() is not threading.main_thread()
        return {"part": ctx.dependency_results["fetch"]["amount"] * (2 if ctx.step_name == "left" else 3)}

    @step("work.merge")
    async def merge(ctx: StepContext) -> dict[str, Any]:
        return {"total": sum(r["part"] for r in ctx.dependency_results.values()), "attempt": ctx.attempt}

    async with Worker(client, namespace=NS, handlers=[fetch, side, merge], max_concurrency=4):
        task = await client.tasks.create(NS, "diamond", {"amount": 5}, request_id="d-1")
        done = await finished(client, task.id)
    assert done.state == TaskState.COMPLETED
    merged = step_of(done, "merge").result.to_dict()
    assert merged == {"total": 25, "attempt": 1}
    assert {s.worker_id for s in done.steps} != {""}


async def test_blocking_sync_handler_does_not_block_the_loop(client: AsyncClient) -> None:
    await register(client, "slow", template("slow", "work.slow", lease_timeout=1.0))
    await register(client, "quick", template("quick", "work.quick"))
    quick_done: list[float] = []

    @step("work.slow")
    def slow(ctx: StepContext) -> None:
        time.sleep(2.5)  # longer than the lease: only heartbeats sent meanwhile keep it

    @step("work.quick")
    async def quick(ctx: StepContext) -> None:
        quick_done.append(time.monotonic())

    async with Worker(client, namespace=NS, handlers=[slow, quick], max_concurrency=4):
        slow_task = await client.tasks.create(NS, "slow")
        await asyncio.sleep(0.3)
        started = time.monotonic()
        quick_tasks = [await client.tasks.create(NS, "quick") for _ in range(5)]
        for quick_task in quick_tasks:
            assert (await finished(client, quick_task.id)).state == TaskState.COMPLETED
        assert time.monotonic() - started < 1.5  # while the sync handler still sleeps
        done = await finished(client, slow_task.id)
    assert done.state == TaskState.COMPLETED
    assert step_of(done, "slow").attempts == 1  # the lease never expired


async def test_retry_after_is_honoured(client: AsyncClient) -> None:
    await register(client, "flaky", template("call", "work.flaky"))
    failed_at: list[float] = []
    scheduled: list[float] = []

    @step("work.flaky")
    async def flaky(ctx: StepContext) -> dict[str, int]:
        if ctx.attempt == 1:
            failed_at.append(time.time())
            raise RetryableError("busy", retry_after=1.0, details={"queue": "full"})
        assert ctx.schedule_time is not None
        scheduled.append(ctx.schedule_time.timestamp())
        return {"attempt": ctx.attempt}

    async with Worker(client, namespace=NS, handlers=[flaky]):
        task = await client.tasks.create(NS, "flaky")
        done = await finished(client, task.id)
    assert done.state == TaskState.COMPLETED
    assert step_of(done, "call").attempts == 2
    assert scheduled[0] - failed_at[0] >= 0.95


async def test_permanent_error_fails_the_task(client: AsyncClient) -> None:
    await register(client, "declined", template("charge", "work.charge", max_attempts=5))

    @step("work.charge")
    async def charge(ctx: StepContext) -> None:
        raise PermanentError("card declined", error_type="CardDeclined")

    async with Worker(client, namespace=NS, handlers=[charge]):
        task = await client.tasks.create(NS, "declined")
        done = await finished(client, task.id)
    assert done.state == TaskState.FAILED
    charged = step_of(done, "charge")
    assert (charged.state, charged.attempts) == (StepState.FAILED, 1)
    assert "CardDeclined" in str(charged.last_error)


async def test_unexpected_exception_is_retried(client: AsyncClient) -> None:
    await register(client, "oops", template("work", "work.oops"))

    @step("work.oops")
    def oops(ctx: StepContext) -> dict[str, int]:
        if ctx.attempt < 3:
            raise ValueError("transient glitch")
        return {"attempt": ctx.attempt}

    async with Worker(client, namespace=NS, handlers=[oops]):
        task = await client.tasks.create(NS, "oops")
        done = await finished(client, task.id)
    assert done.state == TaskState.COMPLETED
    assert step_of(done, "work").attempts == 3


async def test_cancellation_reaches_a_running_handler(client: AsyncClient) -> None:
    await register(client, "long", template("wait", "work.wait", lease_timeout=1.5))
    running = asyncio.Event()
    seen: list[float] = []

    @step("work.wait")
    async def wait(ctx: StepContext) -> dict[str, bool]:
        running.set()
        await asyncio.wait_for(ctx.cancelled.wait(), timeout=10)
        seen.append(time.monotonic())
        return {"stopped": ctx.is_cancelled()}

    async with Worker(client, namespace=NS, handlers=[wait]) as worker:
        task = await client.tasks.create(NS, "long")
        await asyncio.wait_for(running.wait(), 5)
        cancelled_at = time.monotonic()
        assert (await client.tasks.cancel(task.id)).state == TaskState.CANCELLED
        async with asyncio.timeout(5):
            while worker.running_steps:
                await asyncio.sleep(0.05)
    assert seen
    assert seen[0] - cancelled_at < 1.5  # within one heartbeat interval (a third of the lease) and change


async def test_sigterm_hands_back_in_flight_steps(client: AsyncClient) -> None:
    # One attempt only and a long backoff: a hand-back is neither counted nor delayed.
    await register(client, "handback", template("long", "work.long", max_attempts=1, backoff=30.0))
    started = asyncio.Event()

    @step("work.long")
    async def long_step(ctx: StepContext) -> None:
        started.set()
        await asyncio.sleep(60)

    @step("work.long")
    async def quick_step(ctx: StepContext) -> dict[str, int]:
        return {"attempt": ctx.attempt}

    first = Worker(client, namespace=NS, handlers=[long_step], worker_id="first", shutdown_grace=0.2)
    running = asyncio.create_task(first.run())
    task = await client.tasks.create(NS, "handback")
    await asyncio.wait_for(started.wait(), 5)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(running, 5)

    handed_back = time.monotonic()
    async with Worker(client, namespace=NS, handlers=[quick_step], worker_id="second"):
        done = await finished(client, task.id)
    assert time.monotonic() - handed_back < 2.0  # not after the lease expired (30 s)
    assert done.state == TaskState.COMPLETED
    final = step_of(done, "long")
    assert (final.attempts, final.worker_id, final.result.to_dict()) == (1, "second", {"attempt": 1})


async def test_max_concurrency_is_respected(client: AsyncClient) -> None:
    await register(client, "busy", template("work", "work.busy"))
    now_running, most = 0, 0

    @step("work.busy")
    async def busy(ctx: StepContext) -> None:
        nonlocal now_running, most
        now_running += 1
        most = max(most, now_running)
        await asyncio.sleep(0.2)
        now_running -= 1

    async with Worker(client, namespace=NS, handlers=[busy], max_concurrency=3):
        tasks = [await client.tasks.create(NS, "busy") for _ in range(10)]
        for task in tasks:
            assert (await finished(client, task.id)).state == TaskState.COMPLETED
    assert most == 3


def complete_step_calls() -> float:
    total = 0.0
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name == "grpc_server_handled_total" and sample.labels.get("grpc_method") == "CompleteStep":
                total += sample.value
    return total


async def test_outcomes_are_batched(client: AsyncClient) -> None:
    await register(client, "noop", template("noop", "work.noop"))
    count = 300

    @step("work.noop")
    async def noop(ctx: StepContext) -> None:
        return None

    before = complete_step_calls()
    tasks = await client.tasks.batch_create(NS, [_entry() for _ in range(count)])
    async with Worker(client, namespace=NS, handlers=[noop], max_concurrency=100):
        async with asyncio.timeout(30):
            while (await client.admin.get_status()).tasks_by_state.get("COMPLETED", 0) < count:
                await asyncio.sleep(0.05)
    calls = complete_step_calls() - before
    assert len(tasks) == count
    print(f"{count} steps, {calls:.0f} CompleteStep calls")
    assert 0 < calls <= count / 10


def _entry() -> Any:
    from baton.client import create_task_request

    return create_task_request(NS, "noop")


async def test_handler_logs_carry_the_task(client: AsyncClient) -> None:
    await register(client, "logged", template("log", "work.log"))

    @step("work.log")
    def logged(ctx: StepContext) -> None:
        ctx.logger.info("charging")
        structlog.get_logger("app").info("from a module logger")

    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        async with Worker(client, namespace=NS, handlers=[logged]):
            task = await client.tasks.create(NS, "logged", request_id="req-log-1")
            await finished(client, task.id)
    mine = [line for line in logs if line["event"] in ("charging", "from a module logger")]
    assert len(mine) == 2
    for line in mine:
        assert (line["task_id"], line["step"], line["request_id"]) == (task.id, "log", "req-log-1")


async def test_step_spans_join_the_task_trace(client: AsyncClient) -> None:
    await register(client, "traced", template("trace", "work.trace"))
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    seen: list[int] = []

    @step("work.trace")
    async def traced(ctx: StepContext) -> None:
        assert ctx.trace_context.get("traceparent")
        seen.append(trace.get_current_span().get_span_context().trace_id)

    with provider.get_tracer("test").start_as_current_span("checkout") as submit:
        task = await client.tasks.create(NS, "traced")
    async with Worker(client, namespace=NS, handlers=[traced], tracer_provider=provider):
        await finished(client, task.id)
    trace_id = submit.get_span_context().trace_id
    assert seen == [trace_id]
    [span] = [s for s in exporter.get_finished_spans() if s.name == "step work.trace"]
    assert span.context.trace_id == trace_id
    assert span.attributes is not None
    assert span.attributes["baton.task_id"] == task.id


async def test_lost_lease_stops_the_handler_and_drops_its_outcome(client: AsyncClient) -> None:
    await register(client, "lost", template("hold", "work.hold", lease_timeout=1.0))
    running = asyncio.Event()
    stopped: list[bool] = []

    @step("work.hold")
    def hold(ctx: StepContext) -> dict[str, str]:  # sync: notices through is_cancelled()
        running.set()
        deadline = time.monotonic() + 10
        while not ctx.is_cancelled() and time.monotonic() < deadline:
            time.sleep(0.02)
        stopped.append(ctx.is_cancelled())
        return {"too": "late"}

    with structlog.testing.capture_logs() as logs:
        async with Worker(client, namespace=NS, handlers=[hold]) as worker:
            task = await client.tasks.create(NS, "lost")
            await asyncio.wait_for(running.wait(), 5)
            await client.tasks.resolve_step(task.id, "hold", {"by": "operator"})  # the lease is gone
            async with asyncio.timeout(5):
                while worker.running_steps:
                    await asyncio.sleep(0.05)
    assert stopped == [True]
    done = await client.tasks.get(task.id)
    assert step_of(done, "hold").result.to_dict() == {"by": "operator"}
    assert any(line.get("reason") == "lease lost" for line in logs)


async def test_poll_loop_survives_an_unreachable_server() -> None:
    from tests.client.conftest import free_port

    @step("work.none")
    async def none(ctx: StepContext) -> None:
        return None

    with structlog.testing.capture_logs() as logs:
        async with await AsyncClient.connect(f"127.0.0.1:{free_port()}", api_key="k" * 40) as offline:
            worker = Worker(offline, namespace=NS, handlers=[none])
            running = asyncio.create_task(worker.run(handle_signals=False))
            await asyncio.sleep(1.5)  # several polls fail meanwhile
            assert not running.done()
            await worker.shutdown()
            await asyncio.wait_for(running, 5)
    failures = [line for line in logs if line["event"] == "poll failed; backing off"]
    assert len(failures) == 1  # once per outage, not once per attempt
    assert failures[0]["error_type"] == "UnavailableError"


async def test_a_result_too_large_fails_only_its_step(client: AsyncClient) -> None:
    await register(client, "big", template("make", "work.make", max_attempts=1))

    @step("work.make")
    async def make(ctx: StepContext) -> dict[str, str]:
        await asyncio.sleep(0.05)  # finish together, so the outcomes share a CompleteStep call
        return {"blob": "x" * (300 * 1024)} if ctx.context.get("big") else {"ok": "yes"}

    async with Worker(client, namespace=NS, handlers=[make], max_concurrency=10):
        tasks = [await client.tasks.create(NS, "big", {"big": n == 2}) for n in range(5)]
        done = [await finished(client, task.id) for task in tasks]
    assert [task.state for task in done] == [TaskState.COMPLETED] * 2 + [TaskState.FAILED] + [TaskState.COMPLETED] * 2
    assert "InvalidResult" in str(step_of(done[2], "make").last_error)


async def test_shutdown_lets_running_steps_finish_within_the_grace(client: AsyncClient) -> None:
    await register(client, "graceful", template("finish", "work.finish"))
    started = asyncio.Event()

    @step("work.finish")
    async def finish(ctx: StepContext) -> dict[str, bool]:
        started.set()
        await asyncio.sleep(0.5)
        return {"finished": True}

    worker = Worker(client, namespace=NS, handlers=[finish])
    running = asyncio.create_task(worker.run(handle_signals=False))
    task = await client.tasks.create(NS, "graceful")
    await asyncio.wait_for(started.wait(), 5)
    await worker.shutdown(grace=5)
    await running
    done = await client.tasks.get(task.id)  # the outcome was sent before shutdown() returned
    assert done.state == TaskState.COMPLETED
    assert step_of(done, "finish").attempts == 1
