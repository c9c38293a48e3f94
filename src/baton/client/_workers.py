"""WorkerService for `Client.workers` and `AsyncClient.workers`: lease steps and report their outcomes.

Each outcome call carries several leases; the answer has one LeaseOutcome per lease, in order (code 0 accepted,
FAILED_PRECONDITION for a stale fencing token). The worker SDK builds on `AsyncWorkers`.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Unpack

from baton.client._async_transport import AsyncTransport
from baton.client._convert import seconds
from baton.client._methods import spec
from baton.client._options import CallOptions
from baton.client._sync_transport import SyncTransport
from baton_betterproto.baton.v1 import (
    CompleteStepRequest,
    FailStepRequest,
    HeartbeatRequest,
    Lease,
    LeaseOutcome,
    LeaseRef,
    PollStepsRequest,
    StepCompletion,
    StepFailure,
    WorkerServiceAsyncStub,
    WorkerServiceStub,
)

_S = "WorkerService"
POLL, HEARTBEAT = spec(_S, "PollSteps"), spec(_S, "Heartbeat")
COMPLETE, FAIL = spec(_S, "CompleteStep"), spec(_S, "FailStep")


def lease_ref(lease: Lease | LeaseRef) -> LeaseRef:
    """The LeaseRef (step ID and fencing token) of a lease."""
    if isinstance(lease, LeaseRef):
        return lease
    return LeaseRef(step_id=lease.step_id, fencing_token=lease.fencing_token)


def _poll_request(
    namespace: str,
    step_handlers: Sequence[str],
    worker_id: str,
    max_steps: int,
    max_wait: float | datetime.timedelta | None,
) -> PollStepsRequest:
    return PollStepsRequest(
        namespace=namespace,
        step_handlers=list(step_handlers),
        worker_id=worker_id,
        max_steps=max_steps,
        max_wait=seconds(max_wait),
    )


class Workers:
    """WorkerService through the sync client."""

    def __init__(self, transport: SyncTransport) -> None:
        self._rpc = transport
        self._stub = WorkerServiceStub(transport.channel)

    def poll(
        self,
        namespace: str,
        step_handlers: Sequence[str],
        *,
        worker_id: str = "",
        max_steps: int = 1,
        max_wait: float | datetime.timedelta | None = None,
        **options: Unpack[CallOptions],
    ) -> list[Lease]:
        """Long-poll for up to `max_steps` ready steps; empty when none became ready within `max_wait`.
        Never retried (a lost answer would strand its leases until they expire)."""
        request = _poll_request(namespace, step_handlers, worker_id, max_steps, max_wait)
        return self._rpc.unary(POLL, self._stub.poll_steps, request, options).leases

    def heartbeat(
        self, worker_id: str, leases: Sequence[Lease | LeaseRef], **options: Unpack[CallOptions]
    ) -> list[LeaseOutcome]:
        """Extend leases; an outcome's `cancel_requested` says the task was cancelled."""
        request = HeartbeatRequest(worker_id=worker_id, leases=[lease_ref(lease) for lease in leases])
        return self._rpc.unary(HEARTBEAT, self._stub.heartbeat, request, options).outcomes

    def complete(
        self, worker_id: str, completions: Sequence[StepCompletion], **options: Unpack[CallOptions]
    ) -> list[LeaseOutcome]:
        """Complete leased steps with their results (see `baton.client.step_completion`)."""
        request = CompleteStepRequest(worker_id=worker_id, completions=list(completions))
        return self._rpc.unary(COMPLETE, self._stub.complete_step, request, options).outcomes

    def fail(
        self, worker_id: str, failures: Sequence[StepFailure], **options: Unpack[CallOptions]
    ) -> list[LeaseOutcome]:
        """Report failed attempts (see `baton.client.step_failure`)."""
        request = FailStepRequest(worker_id=worker_id, failures=list(failures))
        return self._rpc.unary(FAIL, self._stub.fail_step, request, options).outcomes


class AsyncWorkers:
    """WorkerService through the async client."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._rpc = transport
        self._stub = WorkerServiceAsyncStub(transport.channel)

    async def poll(
        self,
        namespace: str,
        step_handlers: Sequence[str],
        *,
        worker_id: str = "",
        max_steps: int = 1,
        max_wait: float | datetime.timedelta | None = None,
        **options: Unpack[CallOptions],
    ) -> list[Lease]:
        """Long-poll for up to `max_steps` ready steps; empty when none became ready within `max_wait`."""
        request = _poll_request(namespace, step_handlers, worker_id, max_steps, max_wait)
        return (await self._rpc.unary(POLL, self._stub.poll_steps, request, options)).leases

    async def heartbeat(
        self, worker_id: str, leases: Sequence[Lease | LeaseRef], **options: Unpack[CallOptions]
    ) -> list[LeaseOutcome]:
        """Extend leases; an outcome's `cancel_requested` says the task was cancelled."""
        request = HeartbeatRequest(worker_id=worker_id, leases=[lease_ref(lease) for lease in leases])
        return (await self._rpc.unary(HEARTBEAT, self._stub.heartbeat, request, options)).outcomes

    async def complete(
        self, worker_id: str, completions: Sequence[StepCompletion], **options: Unpack[CallOptions]
    ) -> list[LeaseOutcome]:
        """Complete leased steps with their results."""
        request = CompleteStepRequest(worker_id=worker_id, completions=list(completions))
        return (await self._rpc.unary(COMPLETE, self._stub.complete_step, request, options)).outcomes

    async def fail(
        self, worker_id: str, failures: Sequence[StepFailure], **options: Unpack[CallOptions]
    ) -> list[LeaseOutcome]:
        """Report failed attempts."""
        request = FailStepRequest(worker_id=worker_id, failures=list(failures))
        return (await self._rpc.unary(FAIL, self._stub.fail_step, request, options)).outcomes
