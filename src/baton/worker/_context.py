"""`StepContext`: what a handler knows about the attempt it runs, and how it talks back (heartbeat, cancellation)."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from baton_betterproto.baton.v1 import Lease


@dataclass
class StepContext:
    """One attempt of one step, handed to its handler.

    `context` is the task's JSON context and `dependency_results` the results of the steps this one depends on, by
    step name. `cancelled` is set when a heartbeat reports the task cancelled or the lease lost; a long handler
    checks `is_cancelled()` (or awaits `cancelled.wait()`) and stops. `logger` is bound to the task and step, and
    so is every structlog line logged while the handler runs; spans the handler starts join the task's trace.
    """

    lease: Lease
    worker_id: str
    context: dict[str, Any]
    dependency_results: dict[str, dict[str, Any]]
    logger: structlog.stdlib.BoundLogger
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    _request_heartbeat: Callable[[], None] = field(default=lambda: None, repr=False)
    heartbeat_details: Any = field(default=None, repr=False)

    @property
    def task_id(self) -> str:
        """The task's ID."""
        return self.lease.task_id

    @property
    def step_id(self) -> str:
        """The step's ID."""
        return self.lease.step_id

    @property
    def step_name(self) -> str:
        """The step's name in its handler."""
        return self.lease.step_name

    @property
    def step_handler(self) -> str:
        """The step handler this attempt runs."""
        return self.lease.step_handler

    @property
    def namespace(self) -> str:
        """The task's namespace."""
        return self.lease.namespace

    @property
    def handler_name(self) -> str:
        """The task's handler name."""
        return self.lease.handler_name

    @property
    def handler_version(self) -> str:
        """The task's handler version."""
        return self.lease.handler_version

    @property
    def attempt(self) -> int:
        """This attempt's number, from 1."""
        return self.lease.attempt

    @property
    def max_attempts(self) -> int:
        """Attempts the retry policy allows."""
        return self.lease.max_attempts

    @property
    def correlation_id(self) -> str:
        """The task's correlation ID."""
        return self.lease.correlation_id

    @property
    def request_id(self) -> str:
        """The request ID of the call that created the task."""
        return self.lease.request_id

    @property
    def trace_context(self) -> Mapping[str, str]:
        """The W3C trace context (traceparent, tracestate) of the call that created the task."""
        return self.lease.trace_context

    @property
    def lease_timeout(self) -> float:
        """Seconds the lease lasts between heartbeats."""
        timeout = self.lease.lease_timeout
        return timeout.total_seconds() if timeout else 30.0

    @property
    def schedule_time(self) -> datetime.datetime | None:
        """When the step became ready for this attempt."""
        return self.lease.schedule_time

    @property
    def is_last_attempt(self) -> bool:
        """True when a failure of this attempt fails the step for good."""
        return 0 < self.max_attempts <= self.attempt

    def is_cancelled(self) -> bool:
        """True once the task was cancelled or the lease lost; safe to call from a sync handler's thread."""
        return self.cancelled.is_set()

    def heartbeat(self, details: Any = None) -> None:
        """Ask for a heartbeat soon (the worker sends them every third of the lease timeout anyway); safe from a
        sync handler's thread. `details` is kept on the context as progress for the handler's own use."""
        if details is not None:
            self.heartbeat_details = details
        self._request_heartbeat()


def build_context(
    lease: Lease, worker_id: str, logger: structlog.stdlib.BoundLogger, request_heartbeat: Callable[[], None]
) -> StepContext:
    """The StepContext of a lease, its logger bound to the task and step."""
    bound = logger.bind(
        task_id=lease.task_id,
        step_id=lease.step_id,
        step=lease.step_name,
        attempt=lease.attempt,
        request_id=lease.request_id,
        correlation_id=lease.correlation_id,
    )
    return StepContext(
        lease=lease,
        worker_id=worker_id,
        context=lease.context.to_dict() if lease.context is not None else {},
        dependency_results={name: result.to_dict() for name, result in lease.dependency_results.items()},
        logger=bound,
        _request_heartbeat=request_heartbeat,
    )
