"""AdminService.GetStatus as operators see it on a fresh server."""

from __future__ import annotations

import time

import grpc

from baton.about import VERSION
from baton.store.migrate import head_revision
from baton.v1 import admin_pb2, admin_pb2_grpc, common_pb2
from tests.integration.chassis.conftest import create_account, rich_error
from tests.support.server import RunningServer

TASK_STATES = {
    name.removeprefix("TASK_STATE_")
    for name in common_pb2.TaskState.keys()  # noqa: SIM118 - an enum wrapper, not a dict
    if name != "TASK_STATE_UNSPECIFIED"
}


def admin(running: RunningServer) -> admin_pb2_grpc.AdminServiceStub:
    return admin_pb2_grpc.AdminServiceStub(running.channel)


async def test_status_of_a_fresh_server(server: RunningServer) -> None:
    status = await admin(server).GetStatus(admin_pb2.GetStatusRequest(), metadata=server.admin, timeout=5)
    assert status.version
    assert status.version == VERSION
    assert status.uptime.seconds > 0 or status.uptime.nanos > 0
    assert 0 < status.start_time.seconds <= time.time()
    assert status.database_backend == "sqlite"
    assert status.database_round_trip.seconds > 0 or status.database_round_trip.nanos > 0
    assert status.database_round_trip.seconds < 5
    assert status.migration_revision == head_revision()
    assert (status.rate_limit_backend, status.rate_limit_state) == ("local", "ok")
    assert dict(status.tasks_by_state) == dict.fromkeys(TASK_STATES, 0)
    assert status.active_workers == 0
    assert status.serving is True


async def test_uptime_grows(server: RunningServer) -> None:
    first = await admin(server).GetStatus(admin_pb2.GetStatusRequest(), metadata=server.admin, timeout=5)
    second = await admin(server).GetStatus(admin_pb2.GetStatusRequest(), metadata=server.admin, timeout=5)
    as_seconds = [s.uptime.seconds + s.uptime.nanos / 1e9 for s in (first, second)]
    assert as_seconds[1] > as_seconds[0]
    assert first.start_time == second.start_time


async def test_status_reports_draining(server: RunningServer) -> None:
    await server.server.health.drain()
    status = await admin(server).GetStatus(admin_pb2.GetStatusRequest(), metadata=server.admin, timeout=5)
    assert status.serving is False


async def test_status_needs_status_read(server: RunningServer) -> None:
    viewer = await create_account(server, "svc-status-viewer", "viewer")
    error = await rich_error(
        admin(server).GetStatus(admin_pb2.GetStatusRequest(), metadata=viewer.metadata, timeout=5),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert error.info.reason == "PERMISSION_DENIED"
    assert error.info.metadata["permission"] == "status.read"
    operator = await create_account(server, "svc-status-operator", "operator")
    status = await admin(server).GetStatus(admin_pb2.GetStatusRequest(), metadata=operator.metadata, timeout=5)
    assert status.serving
    await rich_error(admin(server).GetStatus(admin_pb2.GetStatusRequest(), timeout=5), grpc.StatusCode.UNAUTHENTICATED)
