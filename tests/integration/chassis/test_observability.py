"""What operators see: one JSON access line per RPC (no secrets), go-grpc-prometheus metrics, OpenTelemetry server
spans annotated with the request ID and principal, and deadlines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY

from baton.observability.logging import configure_logging
from baton.server.policy import load_policies
from baton.v1 import admin_pb2, admin_pb2_grpc, auth_pb2, auth_pb2_grpc, tasks_pb2, tasks_pb2_grpc
from tests.integration.chassis.conftest import (
    PASSWORD,
    api_key,
    bearer,
    config_for,
    create_account,
    create_user,
    login,
    start_server,
)
from tests.support.server import ADMIN_KEY, RunningServer

WHOAMI = "/baton.v1.AuthService/WhoAmI"


@dataclass
class Observed:
    running: RunningServer
    log: io.StringIO
    spans: InMemorySpanExporter

    def access_lines(self) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.log.getvalue().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("logger") == "baton.access"]

    async def access_line(self, request_id: str, within: float = 3.0) -> dict[str, Any]:
        """The one access line of a request (the access log may write lines in batches: wait for it)."""
        deadline = time.monotonic() + within
        while True:
            lines = [line for line in self.access_lines() if line["request_id"] == request_id]
            if lines or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        assert len(lines) == 1, f"{len(lines)} access lines for request {request_id}"
        return lines[0]


@pytest.fixture
async def observed(tmp_path: Path) -> AsyncIterator[Observed]:
    """A server built after logging was pointed at a buffer, with an in-memory span exporter."""
    root = logging.getLogger()
    saved_handlers, saved_level, saved_structlog = root.handlers[:], root.level, structlog.get_config()
    buffer = io.StringIO()
    configure_logging("json", "info", stream=buffer)  # before the server: the access logger is made with the chain
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        async with start_server(config_for(tmp_path), tracer_provider=provider) as running:
            yield Observed(running, buffer, exporter)
    finally:
        configure_logging("json", "info")  # the defaults again, for servers built later
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        structlog.configure(**saved_structlog)


async def outcome(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def auth(running: RunningServer) -> auth_pb2_grpc.AuthServiceStub:
    return auth_pb2_grpc.AuthServiceStub(running.channel)


def rid(value: str) -> tuple[str, str]:
    return ("x-request-id", value)


async def test_one_access_line_per_rpc_and_no_secrets(observed: Observed) -> None:
    running = observed.running
    viewer = await create_account(running, "svc-obs-viewer", "viewer")
    await create_user(running, "obs-human", "viewer", human=True)
    granted = await login(running, "obs-human")
    refreshed = await auth(running).RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=granted.refresh_token))
    wrong_key, bad_token, rejected_id = "wrong-key-" + "q" * 40, "eyJ" + "z" * 60, "bad id with spaces!"
    admin = admin_pb2_grpc.AdminServiceStub(running.channel)
    codes = {
        "obs-ok": await outcome(
            auth(running).WhoAmI(auth_pb2.WhoAmIRequest(), metadata=(*running.admin, rid("obs-ok")))
        ),
        "obs-jwt": await outcome(
            auth(running).WhoAmI(auth_pb2.WhoAmIRequest(), metadata=(*bearer(refreshed.access_token), rid("obs-jwt")))
        ),
        "obs-denied": await outcome(
            admin.GetStatus(admin_pb2.GetStatusRequest(), metadata=(*viewer.metadata, rid("obs-denied")))
        ),
        "obs-anon": await outcome(auth(running).WhoAmI(auth_pb2.WhoAmIRequest(), metadata=(rid("obs-anon"),))),
        "obs-wrong-key": await outcome(
            auth(running).WhoAmI(auth_pb2.WhoAmIRequest(), metadata=(*api_key(wrong_key), rid("obs-wrong-key")))
        ),
        "obs-bad-token": await outcome(
            auth(running).WhoAmI(auth_pb2.WhoAmIRequest(), metadata=(*bearer(bad_token), rid("obs-bad-token")))
        ),
        "obs-bad-login": await outcome(
            auth(running).Login(
                auth_pb2.LoginRequest(username="obs-human", password="x" + PASSWORD), metadata=(rid("obs-bad-login"),)
            )
        ),
        "obs-engine": await outcome(
            tasks_pb2_grpc.TaskServiceStub(running.channel).RetryTask(
                tasks_pb2.RetryTaskRequest(id="x"), metadata=(*running.admin, rid("obs-engine"))
            )
        ),
    }
    await outcome(auth(running).WhoAmI(auth_pb2.WhoAmIRequest(), metadata=(*running.admin, rid(rejected_id))))

    expected_levels = {
        "obs-ok": "info",
        "obs-jwt": "info",
        "obs-denied": "warning",
        "obs-anon": "info",
        "obs-wrong-key": "info",
        "obs-bad-token": "info",
        "obs-bad-login": "info",
        "obs-engine": "info",  # NOT_FOUND: the caller's mistake, not the server's
    }
    admin_who_am_i_id = "obs-last"
    admin_id = (
        await auth(running).WhoAmI(auth_pb2.WhoAmIRequest(), metadata=(*running.admin, rid(admin_who_am_i_id)))
    ).user.id
    for request_id, level in expected_levels.items():
        line = await observed.access_line(request_id)
        assert line["code"] == codes[request_id].name, request_id
        assert line["level"] == level, request_id
        assert line["event"] == "rpc"
        assert line["method"].startswith("/baton.v1.")
        assert isinstance(line["duration_ms"], int | float)
        assert line["duration_ms"] >= 0
        assert line["peer"].startswith("ipv4:127.0.0.1:")
        assert "principal" in line
        assert line["trace_id"]
        assert line["span_id"]
    assert (await observed.access_line("obs-ok"))["principal"] == admin_id
    assert (await observed.access_line("obs-ok"))["method"] == WHOAMI
    assert (await observed.access_line("obs-jwt"))["principal"] == granted.user.id
    assert (await observed.access_line("obs-jwt"))["auth"] == "jwt"
    assert (await observed.access_line("obs-denied"))["principal"] == viewer.user.id
    assert (await observed.access_line("obs-anon"))["principal"] is None
    # Every RPC got exactly one line, the ones made for setting up included.
    await observed.access_line(admin_who_am_i_id)
    ids = [line["request_id"] for line in observed.access_lines()]
    assert len(ids) == len(set(ids))
    assert len(ids) == 5 + len(codes) + 2  # set-up (2 users, 1 key, login, refresh), the calls above, 2 more

    text = observed.log.getvalue()
    secrets = {
        "bootstrap admin key": ADMIN_KEY,
        "viewer's key": viewer.key,
        "password": PASSWORD,
        "access token": granted.access_token,
        "refreshed access token": refreshed.access_token,
        "refresh token": granted.refresh_token,
        "rotated refresh token": refreshed.refresh_token,
        "wrong key": wrong_key,
        "bad token": bad_token,
        "rejected request id": rejected_id,
    }
    leaked = [name for name, value in secrets.items() if value in text]
    assert not leaked, f"secrets in the log: {leaked}"


async def test_no_secrets_in_the_log_when_calls_fail_unexpectedly(observed: Observed) -> None:
    running = observed.running
    account = await create_account(running, "svc-obs-broken", "viewer")
    # Pull the database out from under the server (as tests/integration/test_server.py does).
    await running.server.store.close()
    path = Path(running.config.storage.database_url.get_secret_value().removeprefix("sqlite+aiosqlite:///"))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    password = "a password nobody may log 42"
    who = auth(running).WhoAmI(auth_pb2.WhoAmIRequest(), metadata=(*account.metadata, rid("broken-1")))
    assert await outcome(who) != grpc.StatusCode.OK
    log_in = auth(running).Login(auth_pb2.LoginRequest(username="obs-nobody", password=password))
    assert await outcome(log_in) != grpc.StatusCode.OK
    await observed.access_line("broken-1")
    text = observed.log.getvalue()
    leaked = [name for name, value in (("API key", account.key), ("password", password)) if value in text]
    assert not leaked, f"secrets in the log: {leaked}"


def sample(name: str, method: str, code: str | None = None, service: str = "baton.v1.AuthService") -> float:
    labels = {"grpc_type": "unary", "grpc_service": service, "grpc_method": method}
    if code is not None:
        labels["grpc_code"] = code
    value = REGISTRY.get_sample_value(name, labels)
    assert value is not None, f"no series {name}{labels}"
    return value


async def test_grpc_server_metrics(server: RunningServer) -> None:
    # Every series of every method exists before it is ever called (as go-grpc-prometheus initializes them).
    for policy in load_policies().values():
        labels = {"grpc_type": policy.kind.value, "grpc_service": policy.service, "grpc_method": policy.method}
        assert REGISTRY.get_sample_value("grpc_server_handled_total", {**labels, "grpc_code": "DataLoss"}) == 0
        assert REGISTRY.get_sample_value("grpc_server_handled_total", {**labels, "grpc_code": "OK"}) is not None
        assert REGISTRY.get_sample_value("grpc_server_started_total", labels) is not None
    assert sample("grpc_server_handled_total", "ListAuditEvents", "OK", "baton.v1.AdminService") >= 0

    names = ("grpc_server_started_total", "grpc_server_msg_received_total", "grpc_server_msg_sent_total")
    before = {name: sample(name, "WhoAmI") for name in names}
    ok_before = sample("grpc_server_handled_total", "WhoAmI", "OK")
    unauth_before = sample("grpc_server_handled_total", "WhoAmI", "Unauthenticated")
    count_before = sample("grpc_server_handling_seconds_count", "WhoAmI")
    failures = {"reason": "missing_credentials", "grpc_service": "baton.v1.AuthService"}
    failures_before = REGISTRY.get_sample_value("baton_auth_failures_total", failures) or 0.0

    for _ in range(3):
        await auth(server).WhoAmI(auth_pb2.WhoAmIRequest(), metadata=server.admin)
    for _ in range(2):
        assert await outcome(auth(server).WhoAmI(auth_pb2.WhoAmIRequest())) == grpc.StatusCode.UNAUTHENTICATED

    assert sample("grpc_server_handled_total", "WhoAmI", "OK") == ok_before + 3
    assert sample("grpc_server_handled_total", "WhoAmI", "Unauthenticated") == unauth_before + 2
    assert sample("grpc_server_started_total", "WhoAmI") == before["grpc_server_started_total"] + 5
    assert sample("grpc_server_msg_received_total", "WhoAmI") == before["grpc_server_msg_received_total"] + 5
    assert sample("grpc_server_msg_sent_total", "WhoAmI") == before["grpc_server_msg_sent_total"] + 3
    assert sample("grpc_server_handling_seconds_count", "WhoAmI") == count_before + 5
    assert REGISTRY.get_sample_value("baton_auth_failures_total", failures) == failures_before + 2

    viewer = await create_account(server, "svc-metrics-viewer", "viewer")
    denied_before = sample("grpc_server_handled_total", "GetStatus", "PermissionDenied", "baton.v1.AdminService")
    admin = admin_pb2_grpc.AdminServiceStub(server.channel)
    assert await outcome(admin.GetStatus(admin_pb2.GetStatusRequest(), metadata=viewer.metadata)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    after = sample("grpc_server_handled_total", "GetStatus", "PermissionDenied", "baton.v1.AdminService")
    assert after == denied_before + 1
    denied = {"reason": "permission_denied", "grpc_service": "baton.v1.AdminService"}
    assert (REGISTRY.get_sample_value("baton_auth_failures_total", denied) or 0) >= 1


def server_spans(observed: Observed, name: str) -> list[Any]:
    return [s for s in observed.spans.get_finished_spans() if s.name == name and s.kind == SpanKind.SERVER]


async def test_server_spans_carry_request_id_and_principal(observed: Observed) -> None:
    running = observed.running
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    metadata = (*running.admin, rid("trace-1"), ("traceparent", f"00-{trace_id}-{parent_id}-01"))
    me = await auth(running).WhoAmI(auth_pb2.WhoAmIRequest(), metadata=metadata)
    for _ in range(50):
        if server_spans(observed, WHOAMI):
            break
        await asyncio.sleep(0.02)
    [span] = server_spans(observed, WHOAMI)
    assert span.attributes["baton.request_id"] == "trace-1"
    assert span.attributes["enduser.id"] == me.user.id
    assert format(span.context.trace_id, "032x") == trace_id  # joined the caller's trace
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == parent_id
    line = await observed.access_line("trace-1")
    assert line["trace_id"] == trace_id
    assert line["span_id"] == format(span.context.span_id, "016x")

    anonymous = auth(running).WhoAmI(auth_pb2.WhoAmIRequest(), metadata=(rid("trace-2"),))
    assert await outcome(anonymous) == grpc.StatusCode.UNAUTHENTICATED
    await asyncio.sleep(0.05)
    [refused] = [s for s in server_spans(observed, WHOAMI) if s.attributes.get("baton.request_id") == "trace-2"]
    assert "enduser.id" not in refused.attributes

    health = health_pb2_grpc.HealthStub(running.channel)
    for _ in range(3):
        await health.Check(health_pb2.HealthCheckRequest(service=""))
    await asyncio.sleep(0.05)
    assert not [s for s in observed.spans.get_finished_spans() if "Health" in s.name]


async def test_tiny_client_deadline_is_deadline_exceeded(server: RunningServer) -> None:
    call = auth(server).WhoAmI(auth_pb2.WhoAmIRequest(), metadata=server.admin, timeout=0.000001)
    assert await outcome(call) == grpc.StatusCode.DEADLINE_EXCEEDED
    call = admin_pb2_grpc.AdminServiceStub(server.channel).GetStatus(
        admin_pb2.GetStatusRequest(), metadata=server.admin, timeout=0.000001
    )
    assert await outcome(call) == grpc.StatusCode.DEADLINE_EXCEEDED
    # The server is fine afterwards, and a call with a sane deadline works.
    assert await outcome(auth(server).WhoAmI(auth_pb2.WhoAmIRequest(), metadata=server.admin, timeout=5)) == (
        grpc.StatusCode.OK
    )
