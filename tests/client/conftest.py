"""Fixtures for the client SDK tests: the real server of tests/support/server.py, and small helpers."""

from __future__ import annotations

import socket

from baton_betterproto.baton.v1 import Handler, Role, RoleBinding, StepTemplate, User, UserKind
from tests.support.server import server, server_env

__all__ = ["NS", "PASSWORD", "diamond", "free_port", "server", "server_env", "user"]

NS = "payments"
PASSWORD = "correct horse battery staple"


def diamond(namespace: str = NS, name: str = "diamond", version: str = "1.0.0") -> Handler:
    """fetch -> (left, right) -> merge, with step handlers work.fetch, work.side, work.merge."""

    def step(step_name: str, handler: str, *depends_on: str) -> StepTemplate:
        return StepTemplate(name=step_name, step_handler=handler, depends_on=list(depends_on))

    return Handler(
        namespace=namespace,
        name=name,
        version=version,
        steps=[
            step("fetch", "work.fetch"),
            step("left", "work.side", "fetch"),
            step("right", "work.side", "fetch"),
            step("merge", "work.merge", "left", "right"),
        ],
    )


def user(username: str, role: Role, namespace: str = "", *, human: bool = False) -> User:
    """A User to create, with one role binding."""
    return User(
        username=username,
        display_name=username,
        kind=UserKind.HUMAN if human else UserKind.SERVICE_ACCOUNT,
        role_bindings=[RoleBinding(role=role, namespace=namespace)],
    )


def free_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
