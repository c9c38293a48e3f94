"""Automatic heartbeats: one Heartbeat call carries every in-flight lease that is due (each every third of its
lease timeout, or sooner when its handler asks), and tells the worker which tasks were cancelled or leases lost."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from baton.client import BatonError
from baton.worker._context import StepContext
from baton.worker._reporter import LOST_CODES, MAX_BATCH
from baton_betterproto.baton.v1 import Lease, LeaseOutcome, LeaseRef

Beat = Callable[[Sequence[LeaseRef]], Awaitable[list[LeaseOutcome]]]


@dataclass(eq=False)
class Running:
    """A lease whose handler is running."""

    lease: Lease
    ctx: StepContext
    interval: float
    next_beat: float
    task: asyncio.Task[None] | None = None
    beat_requested: bool = False
    stopped: str = ""  # why the handler was told to stop: "cancelled", "lease lost", "shutdown"
    outcome_sent: bool = False


class Heartbeater:
    """Sends the due heartbeats of `running`; calls `stop(running, reason)` for a cancelled task or a lost lease."""

    def __init__(
        self,
        beat: Beat,
        running: dict[str, Running],
        stop: Callable[[Running, str], None],
        logger: structlog.stdlib.BoundLogger,
    ) -> None:
        self._beat = beat
        self._running = running
        self._stop = stop
        self._log = logger
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._failing = False
        self.calls = 0

    def wake(self) -> None:
        """Recompute the next beat (a lease was added); call from the event loop."""
        self._wake.set()

    def request(self, running: Running) -> None:
        """Send a heartbeat for `running` soon; safe from any thread."""
        running.beat_requested = True
        self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        """Beat until cancelled."""
        while True:
            now = time.monotonic()
            due = [r for r in self._running.values() if not r.stopped and (r.beat_requested or r.next_beat <= now)]
            if due:
                await self._send(due, now)
                continue
            soonest = min((r.next_beat for r in self._running.values() if not r.stopped), default=now + 3600)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(soonest - time.monotonic(), 0.0))

    async def _send(self, due: list[Running], now: float) -> None:
        for running in due:
            running.beat_requested = False
            running.next_beat = now + running.interval
        for first in range(0, len(due), MAX_BATCH):
            chunk = due[first : first + MAX_BATCH]
            refs = [LeaseRef(step_id=r.lease.step_id, fencing_token=r.lease.fencing_token) for r in chunk]
            try:
                self.calls += 1
                outcomes = await self._beat(refs)
            except BatonError as error:
                if not self._failing:
                    self._log.warning("heartbeat failed; retrying", error=str(error))
                self._failing = True
                retry_at = time.monotonic() + 1.0
                for running in chunk:  # retry soon, well before the lease runs out
                    running.next_beat = min(running.next_beat, retry_at)
                continue
            if self._failing:
                self._log.info("heartbeats recovered")
                self._failing = False
            for running, outcome in zip(chunk, outcomes, strict=False):
                if outcome.code in LOST_CODES:
                    self._stop(running, "lease lost")
                elif outcome.cancel_requested:
                    self._stop(running, "cancelled")
