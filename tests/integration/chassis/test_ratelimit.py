"""Rate limiting through the server: RESOURCE_EXHAUSTED with RetryInfo and retry-after, per-principal and
per-peer buckets, exempt health checks, and buckets shared by two servers through Redis (with the fallback)."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from baton.v1 import admin_pb2, admin_pb2_grpc, auth_pb2, auth_pb2_grpc
from tests.integration.chassis.conftest import (
    RedisServer,
    api_key,
    config_for,
    create_account,
    create_key,
    metadata_value,
    rich,
    start_server,
)
from tests.support.server import RunningServer

SMALL = {"BATON_RATE_LIMIT_RPS": "1", "BATON_RATE_LIMIT_BURST": "3", "BATON_RATE_LIMIT_ROLE_MULTIPLIERS": "{}"}
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.fixture
def server_env() -> dict[str, str]:
    return dict(SMALL)


async def whoami(running: RunningServer, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    """WhoAmI (cost 1); the code it ends with."""
    try:
        await auth_pb2_grpc.AuthServiceStub(running.channel).WhoAmI(
            auth_pb2.WhoAmIRequest(), metadata=metadata, timeout=5
        )
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def revoke_nothing(channel: grpc.aio.Channel) -> grpc.StatusCode:
    """An anonymous RevokeToken (public, cost 2) with an empty request: INVALID_ARGUMENT once past the limiter."""
    try:
        await auth_pb2_grpc.AuthServiceStub(channel).RevokeToken(auth_pb2.RevokeTokenRequest(), timeout=5)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_burst_is_refused_with_retry_info(server: RunningServer) -> None:
    codes = [await whoami(server, server.admin) for _ in range(3)]
    assert codes == [grpc.StatusCode.OK] * 3
    call = auth_pb2_grpc.AuthServiceStub(server.channel).WhoAmI(
        auth_pb2.WhoAmIRequest(), metadata=(*server.admin, ("x-request-id", "rl-1"))
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == EXHAUSTED
    error = rich(caught.value)
    assert error.info.reason == "RATE_LIMITED"
    assert error.info.domain == "baton.dev"
    assert error.request_id == "rl-1"
    retry = error.detail(error_details_pb2.RetryInfo)
    delay = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
    assert 0 < delay <= 1.0
    [retry_after] = metadata_value(caught.value.trailing_metadata(), "retry-after")
    assert retry_after.isdigit()
    assert int(retry_after) >= 1
    # The bucket refills at 1/s: after the advertised delay the call goes through again.
    await asyncio.sleep(delay + 0.05)
    assert await whoami(server, server.admin) == grpc.StatusCode.OK


async def test_buckets_are_per_principal(tmp_path: Path) -> None:
    env = {**SMALL, "BATON_RATE_LIMIT_ROLE_MULTIPLIERS": '{"admin": 100}'}  # the admin sets up without limits
    async with start_server(config_for(tmp_path, **env)) as running:
        first = await create_account(running, "svc-rl-one", "viewer")
        second = await create_account(running, "svc-rl-two", "viewer")
        another_key = api_key((await create_key(running, first.user.id)).key)
        assert [await whoami(running, first.metadata) for _ in range(4)] == [grpc.StatusCode.OK] * 3 + [EXHAUSTED]
        assert await whoami(running, second.metadata) == grpc.StatusCode.OK
        assert await whoami(running, running.admin) == grpc.StatusCode.OK
        # A second key of the same principal draws from the same bucket.
        assert await whoami(running, another_key) == EXHAUSTED


async def test_anonymous_calls_are_bucketed_per_peer(tmp_path: Path) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here: no second peer address to call from")
    # Listening on "localhost" binds 127.0.0.1 and ::1: two peer addresses, both on loopback.
    async with start_server(config_for(tmp_path, **SMALL), host="localhost") as running:
        port = running.target.rsplit(":", 1)[1]
        v4_a = running.channel
        v4_b = grpc.aio.insecure_channel(f"127.0.0.1:{port}")  # another connection from the same address
        v6 = grpc.aio.insecure_channel(f"[::1]:{port}")
        try:
            assert await revoke_nothing(v4_a) == grpc.StatusCode.INVALID_ARGUMENT  # 3 - 2 = 1 token left
            assert await revoke_nothing(v4_b) == EXHAUSTED  # same peer address, same bucket
            assert await revoke_nothing(v6) == grpc.StatusCode.INVALID_ARGUMENT  # another peer, its own bucket
            assert await revoke_nothing(v6) == EXHAUSTED
            # Authenticated callers from the same address have their own buckets.
            assert await whoami(running, running.admin) == grpc.StatusCode.OK
        finally:
            await v4_b.close()
            await v6.close()


async def test_calls_without_valid_credentials_spend_the_peer_bucket(tmp_path: Path) -> None:
    # Refused before the rate limit in the chain, they still cost the caller's per-peer bucket (burst 3), so a
    # peer cannot hammer credential lookups and the audit log.
    async with start_server(config_for(tmp_path, **SMALL)) as running:
        bad_key = (("x-api-key", "bk_nosuchkey0000_" + "x" * 43),)
        codes = [await whoami(running, ()), await whoami(running, bad_key), await whoami(running, ())]
        assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 3
        assert await whoami(running, bad_key) == EXHAUSTED
        # Valid credentials from the same address use the principal's own bucket.
        assert await whoami(running, running.admin) == grpc.StatusCode.OK


async def test_health_checks_are_never_rate_limited(server: RunningServer) -> None:
    stub = health_pb2_grpc.HealthStub(server.channel)
    checks = [stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5) for _ in range(20)]
    responses = await asyncio.gather(*checks)
    assert {r.status for r in responses} == {health_pb2.HealthCheckResponse.SERVING}


async def status(running: RunningServer) -> admin_pb2.ServerStatus | None:
    """GetStatus as admin (cost 2), or None when rate limited."""
    try:
        return await admin_pb2_grpc.AdminServiceStub(running.channel).GetStatus(
            admin_pb2.GetStatusRequest(), metadata=running.admin, timeout=5
        )
    except grpc.aio.AioRpcError as error:
        if error.code() != EXHAUSTED:
            raise
        return None


@pytest.mark.redis
async def test_two_servers_share_buckets_through_redis(tmp_path: Path, chassis_redis: RedisServer) -> None:
    # One database (so one admin principal) and one Redis behind two servers.
    config = config_for(tmp_path, **SMALL, BATON_REDIS_URL=chassis_redis.url)
    async with start_server(config) as first, start_server(config) as second:
        assert (await whoami(first, first.admin), await whoami(second, second.admin)) == (grpc.StatusCode.OK,) * 2
        assert await whoami(first, first.admin) == grpc.StatusCode.OK
        # Three calls spent the shared burst of three, whichever server took them.
        assert await whoami(second, second.admin) == EXHAUSTED
        assert await whoami(first, first.admin) == EXHAUSTED
        with chassis_redis.client() as client:
            assert client.dbsize() >= 1
        await asyncio.sleep(2.1)  # refill two tokens for GetStatus
        before = await status(first)
        assert before is not None
        assert (before.rate_limit_backend, before.rate_limit_state) == ("redis", "ok")

        chassis_redis.kill()
        # Redis is gone: calls are still answered at once, from local buckets (fresh, so the burst is back).
        started = time.monotonic()
        fallback = await status(first)
        assert fallback is not None
        assert time.monotonic() - started < 3.0
        assert (fallback.rate_limit_backend, fallback.rate_limit_state) == ("redis", "fallback")
        assert await whoami(second, second.admin) in (grpc.StatusCode.OK, EXHAUSTED)

        chassis_redis.start()
        deadline = time.monotonic() + 5.0
        while True:
            current = await status(first)
            if current is not None and current.rate_limit_state == "ok":
                break
            assert time.monotonic() < deadline, "GetStatus did not report rate_limit_state ok within 5 s"
            await asyncio.sleep(0.5)
        assert current.rate_limit_backend == "redis"
