"""Fixtures for integration tests: a real server on an ephemeral loopback port (see tests/support/server.py)."""

from tests.support.server import server, server_env

__all__ = ["server", "server_env"]
