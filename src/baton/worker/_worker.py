"""`Worker`: long-polls for the steps of its handlers, runs them with bounded concurrency, heartbeats their
leases, reports outcomes in batches and shuts down gracefully (stop polling, finish or hand back, flush, exit)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Self

import structlog
from opentelemetry import trace

from baton.client import (
    AsyncClient,
    BatonError,
    PermissionDeniedError,
    UnauthenticatedError,
    step_failure,
)
from baton.worker._context import build_context
from baton.worker._execute import execute
from baton.worker._heartbeats import Heartbeater, Running
from baton.worker._reporter import Reporter
from baton.worker._step import StepHandler, handler_table
from baton_betterproto.baton.v1 import Lease, StepCompletion, StepFailure

#: Most leases one PollSteps call may return (the contract's limit).
MAX_POLL = 100


class Worker:
    """Runs step handlers for one namespace:

        worker = Worker(client, namespace="shop", handlers=[reserve, charge], max_concurrency=20)
        await worker.run()          # until SIGTERM/SIGINT or `await worker.shutdown()`

    or `async with Worker(...) as worker:` to run it in the background of a block. Async handlers run on the event
    loop, sync ones in a thread pool of `max_threads` (default `max_concurrency`); at most `max_concurrency` steps
    run at once, and the worker only polls for as many as it has free slots. On shutdown it stops polling, waits up
    to `grace` seconds for running steps (a second signal cuts the wait short), hands the rest back as retryable
    `WorkerShutdown` failures with `retry_after=0` and sends every outcome before returning.
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        namespace: str,
        handlers: Sequence[StepHandler],
        max_concurrency: int = 10,
        worker_id: str | None = None,
        max_threads: int | None = None,
        poll_wait: float = 30.0,
        shutdown_grace: float = 30.0,
        cancel_grace: float = 5.0,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        """`poll_wait` is each long-poll's wait; `cancel_grace` how long an async handler may keep running after its
        task was cancelled or its lease lost before it is cancelled itself. Each attempt runs in a span of
        `tracer_provider` (default: the global one), a child of the trace of the call that created the task."""
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.client = client
        self.namespace = namespace
        self.handlers = handler_table(handlers)
        self.max_concurrency = max_concurrency
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._max_threads = max_threads
        self._poll_wait = poll_wait
        self._grace = shutdown_grace
        self._cancel_grace = cancel_grace
        self._tracer = trace.get_tracer("baton.worker", tracer_provider=tracer_provider)
        self._log = structlog.stdlib.get_logger("baton.worker").bind(worker_id=self.worker_id, namespace=namespace)
        self._running: dict[str, Running] = {}
        self._slot_freed = asyncio.Event()
        self._stopping = False
        self._stopped = asyncio.Event()
        self._hurry = asyncio.Event()
        self._started = False
        self._background: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._beats: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._reporter: Reporter | None = None
        self._heartbeater: Heartbeater | None = None
        self.steps_started = 0

    @property
    def running_steps(self) -> int:
        """Steps running now."""
        return len(self._running)

    async def run(self, *, handle_signals: bool = True) -> None:
        """Run until `shutdown()` is called or, with `handle_signals`, SIGTERM or SIGINT arrives."""
        if self._started:
            raise RuntimeError("a Worker runs once")
        self._started = True
        loop = asyncio.get_running_loop()
        workers = self.client.workers
        threads = self._max_threads or self.max_concurrency  # max_concurrency may be changed before run()
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="baton-step")
        self._reporter = Reporter(
            lambda items: workers.complete(self.worker_id, items),
            lambda items: workers.fail(self.worker_id, items),
            self._log,
        )
        self._heartbeater = Heartbeater(
            lambda refs: workers.heartbeat(self.worker_id, refs), self._running, self._stop_step, self._log
        )
        self._beats = loop.create_task(self._heartbeater.run())
        self._poller = loop.create_task(self._poll_loop())
        signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
        for signum in signals:
            loop.add_signal_handler(signum, self._on_signal, signum)
        self._log.info("worker started", step_handlers=sorted(self.handlers), max_concurrency=self.max_concurrency)
        try:
            await self._stopped.wait()
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)
            if not self._stopped.is_set():  # run() itself was cancelled
                await asyncio.shield(self.shutdown(0))

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop polling, wait up to `grace` seconds (default `shutdown_grace`) for running steps, hand back the rest,
        send every outcome and stop. Safe to call more than once."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        if not self._started:
            self._stopped.set()
            return
        grace = self._grace if grace is None else grace
        self._log.info("worker stopping", running=len(self._running), grace=grace)
        await _cancel(self._poller)
        await self._wait_running(grace)
        assert self._reporter is not None
        for running in list(self._running.values()):
            self._stop_step(running, "shutdown")
            running.outcome_sent = True
            self._reporter.fail(
                step_failure(running.lease, "WorkerShutdown", f"worker {self.worker_id} shut down", retry_after=0)
            )
        if self._running:
            self._log.info("steps handed back", count=len(self._running))
            for running in list(self._running.values()):
                if running.task is not None:
                    running.task.cancel()
            await asyncio.wait([r.task for r in self._running.values() if r.task is not None], timeout=1.0)
        await self._reporter.drain()
        await _cancel(self._beats)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._log.info("worker stopped", steps=self.steps_started)
        self._stopped.set()

    async def __aenter__(self) -> Self:
        self._background = asyncio.get_running_loop().create_task(self.run(handle_signals=False))
        await asyncio.sleep(0)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.shutdown()
        if self._background is not None:
            await self._background

    def _on_signal(self, signum: int) -> None:
        if self._stopping:  # a second signal: stop waiting for running steps, hand them back now
            self._log.info("second signal: handing back running steps now", signal=signal.Signals(signum).name)
            self._hurry.set()
            return
        self._log.info("signal received", signal=signal.Signals(signum).name)
        asyncio.get_running_loop().create_task(self.shutdown())

    async def _wait_running(self, grace: float) -> None:
        """Wait until no step runs, `grace` seconds pass or a second signal says hurry."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        hurry = loop.create_task(self._hurry.wait())
        try:
            while self._running and not self._hurry.is_set() and loop.time() < deadline:
                running = [r.task for r in self._running.values() if r.task is not None]
                await asyncio.wait([*running, hurry], timeout=deadline - loop.time(), return_when="FIRST_COMPLETED")
        finally:
            hurry.cancel()

    async def _poll_loop(self) -> None:
        outage_since: float | None = None
        delay = 0.1
        names = sorted(self.handlers)
        while not self._stopping:
            free = self.max_concurrency - len(self._running)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                leases = await self.client.workers.poll(
                    self.namespace,
                    names,
                    worker_id=self.worker_id,
                    max_steps=min(free, MAX_POLL),
                    max_wait=self._poll_wait,
                    timeout=self._poll_wait + 10,
                )
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - the loop outlives any outage
                if outage_since is None:
                    outage_since = time.monotonic()
                    level = "error" if isinstance(error, UnauthenticatedError | PermissionDeniedError) else "warning"
                    getattr(self._log, level)(
                        "poll failed; backing off", error=str(error), error_type=type(error).__name__
                    )
                wait = delay * random.uniform(0.5, 1.5)
                if isinstance(error, BatonError) and error.retry_delay is not None:  # rate limited: as told
                    wait = max(wait, error.retry_delay.total_seconds())
                await asyncio.sleep(wait)
                delay = min(delay * 2, 10.0)
                continue
            if outage_since is not None:
                self._log.info("poll recovered", outage_seconds=round(time.monotonic() - outage_since, 1))
                outage_since, delay = None, 0.1
            for lease in leases:
                self._start(lease)

    def _start(self, lease: Lease) -> None:
        assert self._heartbeater is not None
        heartbeater = self._heartbeater
        timeout = lease.lease_timeout.total_seconds() if lease.lease_timeout else 30.0
        running: Running
        ctx = build_context(lease, self.worker_id, self._log, lambda: heartbeater.request(running))
        interval = max(timeout / 3, 0.2)
        running = Running(lease=lease, ctx=ctx, interval=interval, next_beat=time.monotonic() + interval)
        self._running[lease.step_id] = running
        running.task = asyncio.get_running_loop().create_task(self._run_step(running))
        self.steps_started += 1
        heartbeater.wake()

    async def _run_step(self, running: Running) -> None:
        assert self._reporter is not None
        assert self._executor is not None
        handler = self.handlers.get(running.lease.step_handler)
        outcome: StepCompletion | StepFailure
        try:
            if handler is None:  # the server only leases what we asked for; guard anyway
                outcome = step_failure(
                    running.lease, "UnknownStepHandler", running.lease.step_handler, retryable=True, retry_after=1
                )
            else:
                outcome = await execute(handler, running.ctx, self._executor, self._tracer)
        except asyncio.CancelledError:
            outcome = step_failure(
                running.lease,
                "Cancelled",
                f"step stopped: {running.stopped or 'cancelled'}",
                retryable=running.stopped != "cancelled",
            )
        finally:
            self._running.pop(running.lease.step_id, None)
            self._slot_freed.set()
        if running.outcome_sent or running.stopped == "lease lost":
            return
        running.outcome_sent = True
        if isinstance(outcome, StepCompletion):
            self._reporter.complete(outcome)
        else:
            self._reporter.fail(outcome)

    def _stop_step(self, running: Running, reason: str) -> None:
        """Tell a running handler to stop (its task was cancelled, its lease lost, or the worker stops)."""
        if running.stopped:
            return
        running.stopped = reason
        running.ctx.cancelled.set()
        if reason != "shutdown":
            running.ctx.logger.info("step told to stop", reason=reason)
        task = running.task
        if task is not None and reason != "shutdown":
            asyncio.get_running_loop().call_later(self._cancel_grace, task.cancel)


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is None or task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
