"""WorkerService: long-polled leases of READY steps, heartbeats, and the outcomes of attempts.

The chain has already checked `steps.poll` (in the request's namespace for PollSteps). Outcome calls carry
several leases; a lease of a step in a namespace where the caller may not poll is answered NOT_FOUND, like an
unknown step, and each lease gets its own outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from baton.config import EngineConfig
from baton.engine.dispatch import Dispatcher
from baton.errors import FieldViolation, InvalidArgument, Unauthenticated
from baton.server.convert import seconds
from baton.server.interceptors.base import Call, current_call
from baton.server.services.workers_convert import (
    completion_from_proto,
    failure_from_proto,
    lease_ref,
    lease_to_proto,
    outcome_to_proto,
)
from baton.v1 import workers_pb2, workers_pb2_grpc

PERMISSION = "steps.poll"
MAX_STEPS = 100
MAX_LEASES = 1000
MAX_STEP_HANDLERS = 100
#: A long-poll returns this long before the caller's deadline, so the empty answer arrives in time.
DEADLINE_MARGIN = 0.2


def _call() -> Call:
    call = current_call()
    if call is None or call.principal is None:  # the chain authenticates every WorkerService call
        raise Unauthenticated("WorkerService needs an authenticated caller")
    return call


def _visible() -> Callable[[str], bool]:
    principal = _call().principal
    assert principal is not None
    return lambda namespace: principal.can(PERMISSION, namespace)


def _worker_id(worker_id: str) -> str:
    if len(worker_id) > 128:
        raise InvalidArgument(
            "worker_id is too long", field_violations=[FieldViolation("worker_id", "at most 128 characters")]
        )
    if worker_id:
        return worker_id
    principal = _call().principal
    assert principal is not None
    return principal.id


def _bounded(count: int, field: str) -> None:
    if count > MAX_LEASES:
        raise InvalidArgument(
            f"too many {field}", field_violations=[FieldViolation(field, f"at most {MAX_LEASES}, got {count}")]
        )


class WorkerService(workers_pb2_grpc.WorkerServiceServicer):
    """Converts and delegates to the Dispatcher."""

    def __init__(self, dispatch: Dispatcher, config: EngineConfig) -> None:
        self._dispatch = dispatch
        self._max_wait = config.max_poll_wait_seconds

    async def PollSteps(self, request: workers_pb2.PollStepsRequest, context: Any) -> workers_pb2.PollStepsResponse:
        """Lease up to max_steps READY steps, waiting until some are ready, max_wait or the deadline."""
        violations = []
        if not request.namespace:
            violations.append(FieldViolation("namespace", "must not be empty"))
        handlers = request.step_handlers
        if not handlers or len(handlers) > MAX_STEP_HANDLERS or not all(0 < len(h) <= 128 for h in handlers):
            violations.append(
                FieldViolation("step_handlers", f"1 to {MAX_STEP_HANDLERS} step handlers of 1-128 characters")
            )
        if not 0 <= request.max_steps <= MAX_STEPS:
            violations.append(
                FieldViolation("max_steps", f"must be between 1 and {MAX_STEPS}, got {request.max_steps}")
            )
        wait = seconds(request.max_wait)
        if wait < 0:
            violations.append(FieldViolation("max_wait", "must not be negative"))
        if violations:
            raise InvalidArgument(f"invalid poll: {violations[0].field}: {violations[0].description}",
                                  field_violations=violations)  # fmt: skip
        worker_id = _worker_id(request.worker_id)
        wait = min(wait, self._max_wait)
        remaining = _call().time_remaining()
        if remaining is not None:
            wait = min(wait, remaining - DEADLINE_MARGIN)
        leases = await self._dispatch.poll(
            request.namespace, list(request.step_handlers), worker_id, request.max_steps or 1, max(0.0, wait)
        )
        return workers_pb2.PollStepsResponse(leases=[lease_to_proto(lease) for lease in leases])

    async def Heartbeat(self, request: workers_pb2.HeartbeatRequest, context: Any) -> workers_pb2.HeartbeatResponse:
        """Extend leases; each outcome says whether the task was cancelled."""
        _bounded(len(request.leases), "leases")
        leases = [lease_ref(lease) for lease in request.leases]
        outcomes = await self._dispatch.heartbeat(_worker_id(request.worker_id), leases, _visible())
        return workers_pb2.HeartbeatResponse(outcomes=[outcome_to_proto(outcome) for outcome in outcomes])

    async def CompleteStep(
        self, request: workers_pb2.CompleteStepRequest, context: Any
    ) -> workers_pb2.CompleteStepResponse:
        """Complete leased steps with their results."""
        _bounded(len(request.completions), "completions")
        completions = [completion_from_proto(c, f"completions[{i}]") for i, c in enumerate(request.completions)]
        outcomes = await self._dispatch.complete(_worker_id(request.worker_id), completions, _visible())
        return workers_pb2.CompleteStepResponse(outcomes=[outcome_to_proto(outcome) for outcome in outcomes])

    async def FailStep(self, request: workers_pb2.FailStepRequest, context: Any) -> workers_pb2.FailStepResponse:
        """Record failed attempts; each is retried or fails its step as the retry policy says."""
        _bounded(len(request.failures), "failures")
        failures = [failure_from_proto(f, f"failures[{i}]") for i, f in enumerate(request.failures)]
        outcomes = await self._dispatch.fail(_worker_id(request.worker_id), failures, _visible())
        return workers_pb2.FailStepResponse(outcomes=[outcome_to_proto(outcome) for outcome in outcomes])
