"""The concurrent-call limit (BATON_MAX_CONCURRENT_RPCS): the call beyond it gets RESOURCE_EXHAUSTED with
RetryInfo and retry-after, probes still answer, and calls go through again once the busy ones end."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from baton.v1 import auth_pb2, auth_pb2_grpc, workers_pb2, workers_pb2_grpc
from tests.integration.chassis.conftest import metadata_value, rich
from tests.support.server import RunningServer

LIMIT = 2


@pytest.fixture
def server_env() -> dict[str, str]:
    return {"BATON_MAX_CONCURRENT_RPCS": str(LIMIT)}


def hold(worker: int) -> workers_pb2.PollStepsRequest:
    """A long poll on an empty namespace: it holds its place for max_wait."""
    return workers_pb2.PollStepsRequest(
        namespace="idle",
        worker_id=f"idle-{worker}",
        step_handlers=[f"nothing-{worker}"],
        max_wait=duration_pb2.Duration(seconds=30),
    )


def started(service: str, method: str) -> float:
    labels = {"grpc_service": f"baton.v1.{service}", "grpc_method": method, "grpc_type": "unary"}
    return REGISTRY.get_sample_value("grpc_server_started_total", labels) or 0.0


def ended(service: str, method: str, code: str) -> float:
    labels = {"grpc_service": f"baton.v1.{service}", "grpc_method": method, "grpc_type": "unary", "grpc_code": code}
    return REGISTRY.get_sample_value("grpc_server_handled_total", labels) or 0.0


def handled(code: str) -> float:
    return ended("AuthService", "WhoAmI", code)


async def test_the_call_beyond_the_limit_is_refused_until_one_ends(server: RunningServer) -> None:
    workers = workers_pb2_grpc.WorkerServiceStub(server.channel)
    whoami = auth_pb2_grpc.AuthServiceStub(server.channel).WhoAmI
    polls_started = started("WorkerService", "PollSteps")
    polls_cancelled = ended("WorkerService", "PollSteps", "Canceled")
    polls = [
        asyncio.ensure_future(workers.PollSteps(hold(worker), metadata=server.admin, timeout=60))
        for worker in range(LIMIT)
    ]
    refused_before = handled("ResourceExhausted")
    try:
        # Both polls are counted in once the chain has seen them (the metrics concern counts them first).
        for _ in range(500):
            if started("WorkerService", "PollSteps") == polls_started + LIMIT:
                break
            await asyncio.sleep(0.01)
        assert started("WorkerService", "PollSteps") == polls_started + LIMIT
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await whoami(auth_pb2.WhoAmIRequest(), metadata=(*server.admin, ("x-request-id", "adm-1")), timeout=5)
        error = caught.value
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        status = rich(error)
        assert status.info.reason == "SERVER_OVERLOADED"
        assert status.info.metadata["limit"] == str(LIMIT)
        assert status.request_id == "adm-1"
        retry = status.detail(error_details_pb2.RetryInfo)
        assert retry.retry_delay.seconds == 1
        assert metadata_value(error.trailing_metadata(), "retry-after") == ["1"]
        assert handled("ResourceExhausted") == refused_before + 1
        # Probes are not counted: a server at its limit is busy, not dead.
        health = await health_pb2_grpc.HealthStub(server.channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        for poll in polls:
            poll.cancel()
        await asyncio.gather(*polls, return_exceptions=True)
    # The cancelled polls are counted out once the server has seen them end: calls are admitted again, more
    # than LIMIT of them one after another.
    for _ in range(500):
        if ended("WorkerService", "PollSteps", "Canceled") == polls_cancelled + LIMIT:
            break
        await asyncio.sleep(0.01)
    assert ended("WorkerService", "PollSteps", "Canceled") == polls_cancelled + LIMIT
    for _ in range(LIMIT + 2):
        await whoami(auth_pb2.WhoAmIRequest(), metadata=server.admin, timeout=5)
