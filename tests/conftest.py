"""Fixtures shared by every suite: a real PostgreSQL server for the session, an empty database per test.

The server is a throwaway cluster from the local PostgreSQL binaries (tests/support/postgres.py). Missing binaries
fail the PostgreSQL tests; they never skip.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest
from pytest_postgresql.janitor import DatabaseJanitor

from tests.support.postgres import PostgresServer, start_cluster

_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session, stopped and deleted at the end."""
    try:
        cluster, server = start_cluster()
    except RuntimeError as error:
        pytest.fail(f"{error}; the PostgreSQL contract tests must run", pytrace=False)
    try:
        yield server
    finally:
        cluster.stop()


@pytest.fixture
def postgresql_url(postgresql_server: PostgresServer) -> Iterator[str]:
    """URL of a new, empty database on the session's server, dropped after the test."""
    server = postgresql_server
    janitor = DatabaseJanitor(
        user=server.user,
        host=server.host,
        port=server.port,
        password=server.password,
        dbname=f"baton_test_{os.getpid()}_{next(_database_numbers)}",
    )
    with janitor:
        yield server.url(janitor.dbname)
