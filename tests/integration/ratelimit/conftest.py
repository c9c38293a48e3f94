"""Real Redis servers for the rate-limit tests, run by pytest-redis's executor on free ports of 127.0.0.1.

A missing `redis-server` fails these tests with a message saying what to install; they never skip.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import port_for
import pytest
import redis
from pytest_redis.executor import RedisExecutor

REDIS_PASSWORD = "rl-test-secret-pw"


@dataclass
class RedisServer:
    """A Redis process that a test may kill and start again on the same port."""

    executor: RedisExecutor
    password: str | None

    @property
    def url(self) -> str:
        credentials = f":{self.password}@" if self.password else ""
        return f"redis://{credentials}127.0.0.1:{self.executor.port}/0"

    def client(self) -> redis.Redis:
        """A synchronous client, to look at what the limiter stored."""
        return redis.Redis(host="127.0.0.1", port=self.executor.port, password=self.password)

    def start(self) -> None:
        """Start the process (again) and turn persistence off, so a restart begins empty."""
        self.executor.start()
        with self.client() as client:
            client.config_set("save", "")

    def kill(self) -> None:
        """SIGKILL the process, as a crash would."""
        self.executor.kill()


@pytest.fixture(scope="session")
def redis_server_executable() -> str:
    """Path of redis-server; fails (never skips) the Redis tests when it is missing."""
    path = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").is_file() else None
    )
    if path is None:
        pytest.fail(
            "redis-server not found on PATH or in /usr/bin: install the `redis-server` package "
            "(`apt-get install -y --no-install-recommends redis-server`; scripts/test does); "
            "the Redis rate-limit tests must run",
            pytrace=False,
        )
    return path


def _server(executable: str, datadir: Path, password: str | None = None) -> RedisServer:
    port = port_for.get_port(None)
    assert port is not None
    executor = RedisExecutor(
        executable=executable,
        databases=1,
        redis_timeout=0,
        loglevel="warning",
        host="127.0.0.1",
        port=port,
        password=password,
        startup_timeout=10,
        datadir=datadir,
    )
    return RedisServer(executor, password)


@pytest.fixture(scope="session")
def shared_redis(redis_server_executable: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One Redis for the session's tests that leave it running."""
    server = _server(redis_server_executable, tmp_path_factory.mktemp("redis"))
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
def killable_redis(redis_server_executable: str, tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test only, with a password, that the test may kill and restart."""
    server = _server(redis_server_executable, tmp_path, password=REDIS_PASSWORD)
    server.start()
    try:
        yield server
    finally:
        server.kill()
