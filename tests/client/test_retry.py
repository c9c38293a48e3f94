"""Retries only where the contract allows them: a small rate limit, and a server that is down.

NO_SIDE_EFFECTS methods and IDEMPOTENT ones (with their idempotency key, when the request has one) are retried on
RESOURCE_EXHAUSTED and UNAVAILABLE, waiting at least the server's RetryInfo delay; everything else fails at once.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from baton.client import (
    AsyncClient,
    Client,
    RateLimitedError,
    ResourceExhaustedError,
    RetryPolicy,
    UnavailableError,
)
from tests.client.conftest import NS, diamond, free_port
from tests.support.server import ADMIN_KEY, RunningServer

NO_RETRIES = RetryPolicy(max_attempts=1)
FAST = RetryPolicy(max_attempts=4, initial_backoff=0.05, max_backoff=0.2)


@pytest.fixture
def server_env() -> dict[str, str]:
    """2 tokens a second, bursts of 6, the same for every role."""
    return {"BATON_RATE_LIMIT_RPS": "2", "BATON_RATE_LIMIT_BURST": "6", "BATON_RATE_LIMIT_ROLE_MULTIPLIERS": "{}"}


def _exhaust(client: Client) -> RateLimitedError:
    """Spend the caller's bucket with unretried calls; the rate-limit error that ends it."""
    for _ in range(50):
        try:
            client.auth.who_am_i()
        except RateLimitedError as error:
            return error
    raise AssertionError("never rate limited")


def _rate_limited(target: str) -> None:
    with (
        Client.connect(target, api_key=ADMIN_KEY) as client,
        Client.connect(target, api_key=ADMIN_KEY, retry_policy=NO_RETRIES) as once,
    ):
        client.handlers.register(diamond())
        task = client.tasks.create(NS, "diamond", request_id="setup")

        error = _exhaust(once)
        assert isinstance(error, ResourceExhaustedError)
        assert error.reason == "RATE_LIMITED"
        assert error.retry_delay is not None
        assert 0 < error.retry_delay.total_seconds() <= 1
        assert once.last_call is not None
        assert once.last_call.attempts == 1

        assert client.tasks.get(task.id).id == task.id  # NO_SIDE_EFFECTS: waits for RetryInfo and succeeds
        assert client.last_call is not None
        assert client.last_call.attempts >= 2

        _exhaust(once)
        with pytest.raises(RateLimitedError):  # IDEMPOTENT only with a request_id: not retried without one
            client.tasks.create(NS, "diamond")
        assert client.last_call is not None
        assert client.last_call.attempts == 1

        with pytest.raises(RateLimitedError):  # PollSteps is not idempotent
            client.workers.poll(NS, ["work.fetch"], max_wait=0.1)
        assert client.last_call is not None
        assert client.last_call.attempts == 1

        created = client.tasks.create(NS, "diamond", request_id="retried-create")  # with one: retried
        assert created.request_id == "retried-create"
        assert client.last_call is not None
        assert client.last_call.attempts >= 2


async def test_rate_limited_calls_retry_only_when_idempotent(server: RunningServer) -> None:
    await asyncio.to_thread(_rate_limited, server.target)


async def test_async_client_honours_retry_info(server: RunningServer) -> None:
    async with (
        await AsyncClient.connect(server.target, api_key=ADMIN_KEY) as client,
        await AsyncClient.connect(server.target, api_key=ADMIN_KEY, retry_policy=NO_RETRIES) as once,
    ):
        for _ in range(50):
            try:
                await once.auth.who_am_i()
            except RateLimitedError as error:
                limited = error
                break
        assert limited.retry_delay is not None
        started = time.monotonic()
        await client.auth.who_am_i()
        assert client.last_call is not None
        assert client.last_call.attempts >= 2
        assert time.monotonic() - started >= 0.3  # waited for the bucket, not just the 0.1 s backoff


def _server_down(target: str) -> None:
    with Client.connect(target, api_key=ADMIN_KEY, retry_policy=FAST) as client:
        started = time.monotonic()
        with pytest.raises(UnavailableError) as down:
            client.auth.who_am_i()
        assert time.monotonic() - started < 5
        assert client.last_call is not None
        assert client.last_call.attempts == FAST.max_attempts
        assert down.value.request_id == client.last_call.request_id

        with pytest.raises(UnavailableError):
            client.workers.poll(NS, ["work.fetch"])
        assert client.last_call is not None
        assert client.last_call.attempts == 1

    with Client.connect(target, api_key=ADMIN_KEY) as client:  # the default policy: bounded too
        started = time.monotonic()
        with pytest.raises(UnavailableError):
            client.tasks.get("t-1", timeout=1.0)
        assert time.monotonic() - started < 2


async def test_server_down_is_a_typed_error_after_the_retry_budget() -> None:
    target = f"127.0.0.1:{free_port()}"
    await asyncio.wait_for(asyncio.to_thread(_server_down, target), 30)

    async with await AsyncClient.connect(target, api_key=ADMIN_KEY, retry_policy=FAST) as client:
        started = time.monotonic()
        with pytest.raises(UnavailableError):
            await client.tasks.get("t-1", timeout=10)
        assert time.monotonic() - started < 5
        assert client.last_call is not None
        assert client.last_call.attempts == FAST.max_attempts
        with pytest.raises(UnavailableError):
            await client.tasks.create(NS, "diamond")
        assert client.last_call is not None
        assert client.last_call.attempts == 1

    started = time.monotonic()
    with pytest.raises(UnavailableError):  # username/password: the login at connect fails the same way
        await AsyncClient.connect(target, username="someone", password="secret-secret")
    assert time.monotonic() - started < 2
