"""Real Redis servers for the rate-limit tests (see tests/support/redis.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.redis import RedisServer, new_redis_server

REDIS_PASSWORD = "rl-test-secret-pw"


@pytest.fixture(scope="session")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One Redis for the session's tests that leave it running."""
    server = new_redis_server(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.executor.stop()


@pytest.fixture
def redis_server(shared_redis: RedisServer) -> Iterator[RedisServer]:
    """The session's Redis, emptied after the test."""
    yield shared_redis
    with shared_redis.client() as client:
        client.flushall()


@pytest.fixture
def killable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test only, with a password, that the test may kill and restart."""
    server = new_redis_server(tmp_path / "redis", password=REDIS_PASSWORD)
    server.start()
    try:
        yield server
    finally:
        server.kill()
