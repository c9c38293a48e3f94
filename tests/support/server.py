"""A real Baton server on 127.0.0.1:<ephemeral> over a real SQLite file, shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from baton.config import Config, load_config
from baton.server.app import BatonServer
from baton.store import open_store


@dataclass
class RunningServer:
    """A started server and an open channel to it."""

    server: BatonServer
    target: str
    channel: grpc.aio.Channel
    config: Config

    @property
    def admin(self) -> tuple[tuple[str, str], ...]:
        """Call metadata authenticating as the bootstrap admin."""
        return (("x-api-key", ADMIN_KEY),)


#: The bootstrap admin's API key in every test server.
ADMIN_KEY = "test-admin-key-0123456789abcdefghijklmnopqrstuvwxyz"
JWT_SECRET = "test-jwt-secret-0123456789abcdefghijklmnopqrstuvwxyz"


def make_config(tmp_path: Path, **env: str) -> Config:
    """Configuration for tests: a SQLite file in tmp_path, a known admin key and JWT secret, no drain delay."""
    base = {
        "BATON_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'baton.db'}",
        "BATON_DRAIN_SECONDS": "0",
        "BATON_GRACE_SECONDS": "1",
        "BATON_METRICS_PORT": "0",
        "BATON_BOOTSTRAP_ADMIN_API_KEY": ADMIN_KEY,
        "BATON_JWT_SECRET": JWT_SECRET,
    }
    return load_config({**base, **env})


@pytest.fixture
def server_env() -> dict[str, str]:
    """Extra BATON_* variables for the `server` fixture; override in a test module to change them."""
    return {}


@asynccontextmanager
async def running_server(config: Config) -> AsyncIterator[RunningServer]:
    """A Baton server for `config` on an ephemeral loopback port, with an open channel; stopped and its store
    closed on exit."""
    store = await open_store(config.storage, auto_migrate=True)
    baton = await BatonServer.create(config, store)
    port = await baton.start(host="127.0.0.1", port=0)
    target = f"127.0.0.1:{port}"
    channel = grpc.aio.insecure_channel(target)
    try:
        yield RunningServer(server=baton, target=target, channel=channel, config=config)
    finally:
        await channel.close()
        await baton.stop(grace=0.5, drain=0)
        await store.close()


@pytest.fixture
async def server(tmp_path: Path, server_env: dict[str, str]) -> AsyncIterator[RunningServer]:
    """Start a Baton server on an ephemeral loopback port; stop it and close the store afterwards."""
    async with running_server(make_config(tmp_path, **server_env)) as running:
        yield running
