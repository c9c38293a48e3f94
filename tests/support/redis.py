"""Real Redis servers for tests, run by pytest-redis's executor on free ports of 127.0.0.1.

A missing `redis-server` fails the tests that need one with a message saying what to install; they never skip.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import port_for
import pytest
import redis
from pytest_redis.executor import RedisExecutor


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
        """A synchronous client, to look at what was stored."""
        return redis.Redis(host="127.0.0.1", port=self.executor.port, password=self.password)

    def start(self) -> None:
        """Start the process (again) and turn persistence off, so a restart begins empty."""
        self.executor.start()
        with self.client() as client:
            client.config_set("save", "")

    def kill(self) -> None:
        """SIGKILL the process, as a crash would."""
        self.executor.kill()


def redis_server_executable() -> str:
    """Path of redis-server; fails (never skips) the calling test when it is missing."""
    path = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").is_file() else None
    )
    if path is None:
        pytest.fail(
            "redis-server not found on PATH or in /usr/bin: install the `redis-server` package "
            "(`apt-get install -y --no-install-recommends redis-server`; scripts/test does); "
            "the Redis tests must run",
            pytrace=False,
        )
    return path


def new_redis_server(datadir: Path, password: str | None = None) -> RedisServer:
    """A Redis server (not started yet) on a free port of 127.0.0.1, keeping its files in `datadir`."""
    port = port_for.get_port(None)
    assert port is not None
    datadir.mkdir(parents=True, exist_ok=True)
    executor = RedisExecutor(
        executable=redis_server_executable(),
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
