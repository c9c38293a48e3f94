"""Outcome batching: completions and failures are buffered and sent together, one CompleteStep and one FailStep
call per batch. A flush starts as soon as the buffer has items and no flush is in flight, so under load batches grow
by themselves while the previous call is on the wire, and at low load an outcome goes out at once."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from baton.client import (
    BatonError,
    DeadlineExceededError,
    InternalError,
    ResourceExhaustedError,
    UnavailableError,
    UnknownError,
    step_failure,
)
from baton_betterproto.baton.v1 import LeaseOutcome, StepCompletion, StepFailure

#: Most outcomes one call carries (the contract's limit).
MAX_BATCH = 1000
#: Status codes of a lost lease in a LeaseOutcome: FAILED_PRECONDITION, NOT_FOUND.
LOST_CODES = frozenset({9, 5})
TRANSIENT = (UnavailableError, DeadlineExceededError, ResourceExhaustedError, InternalError, UnknownError)

Send = Callable[[Sequence[StepCompletion]], Awaitable[list[LeaseOutcome]]]
SendFailures = Callable[[Sequence[StepFailure]], Awaitable[list[LeaseOutcome]]]


class Reporter:
    """Buffers outcomes and flushes them in batches; transient errors are retried with backoff until `give_up`
    seconds have passed (the leases have expired by then and the server retries the steps itself)."""

    def __init__(
        self, complete: Send, fail: SendFailures, logger: structlog.stdlib.BoundLogger, give_up: float = 60.0
    ) -> None:
        self._complete = complete
        self._fail = fail
        self._log = logger
        self._give_up = give_up
        self._completions: list[StepCompletion] = []
        self._failures: list[StepFailure] = []
        self._flushing: asyncio.Task[None] | None = None
        self.calls = 0

    def complete(self, completion: StepCompletion) -> None:
        """Queue a completion."""
        self._completions.append(completion)
        self._kick()

    def fail(self, failure: StepFailure) -> None:
        """Queue a failure."""
        self._failures.append(failure)
        self._kick()

    @property
    def pending(self) -> int:
        """Outcomes not yet acknowledged by the server."""
        return len(self._completions) + len(self._failures)

    async def drain(self) -> None:
        """Wait until every queued outcome was sent (or given up on)."""
        while self._flushing is not None:
            await asyncio.shield(self._flushing)

    def _kick(self) -> None:
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._completions or self._failures:
                completions, self._completions = self._completions[:MAX_BATCH], self._completions[MAX_BATCH:]
                failures, self._failures = self._failures[:MAX_BATCH], self._failures[MAX_BATCH:]
                sends = []
                if completions:
                    sends.append(self._send(completions, self._complete, "CompleteStep"))
                if failures:
                    sends.append(self._send(failures, self._fail, "FailStep"))
                await asyncio.gather(*sends)
        finally:
            self._flushing = None

    async def _send(
        self,
        items: Sequence[Any],
        send: Callable[..., Awaitable[list[LeaseOutcome]]],
        method: str,
    ) -> None:
        started = time.monotonic()
        delay = 0.05
        while True:
            try:
                self.calls += 1
                outcomes = await send(items)
            except TRANSIENT as error:
                if time.monotonic() - started > self._give_up:
                    self._log.error("outcomes dropped", method=method, count=len(items), error=str(error))
                    return
                self._log.warning("outcome call failed; retrying", method=method, error=str(error))
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 2.0)
                continue
            except BatonError as error:
                if len(items) > 1:  # one bad outcome must not sink the others
                    for item in items:
                        await self._send([item], send, method)
                    return
                self._refused(items[0], method, error.message)
                return
            self._check(items, outcomes, method)
            return

    def _refused(self, item: StepCompletion | StepFailure, method: str, reason: str) -> None:
        """An outcome the server refused as invalid (a result too large, say): report it as a failure instead."""
        self._log.error(
            "outcome refused", method=method, step_id=item.lease.step_id if item.lease else "", reason=reason
        )
        if item.lease is None:
            return
        if isinstance(item, StepCompletion):
            self.fail(step_failure(item.lease, "InvalidResult", reason, retryable=False))
        elif item.details is not None:  # the details may be what was refused: once more without them
            self.fail(
                step_failure(
                    item.lease,
                    item.error_type,
                    item.error_message,
                    retryable=item.retryable,
                    retry_after=item.retry_after,
                )
            )

    def _check(self, items: Sequence[Any], outcomes: list[LeaseOutcome], method: str) -> None:
        for item, outcome in zip(items, outcomes, strict=False):
            if outcome.code in LOST_CODES:
                self._log.info(
                    "lease lost; outcome dropped", method=method, step_id=outcome.step_id, reason=outcome.message
                )
            elif outcome.code:
                self._refused(item, method, f"code {outcome.code}: {outcome.message}")
