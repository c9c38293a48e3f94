"""Fixtures for the worker SDK tests: the real server of tests/support/server.py, a client, and helpers."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator

import pytest

from baton.client import AsyncClient
from baton_betterproto.baton.v1 import Handler, RetryPolicy, StepTemplate, Task, TaskState
from tests.support.server import ADMIN_KEY, RunningServer, server, server_env

__all__ = ["NS", "client", "finished", "register", "server", "server_env", "template"]

NS = "shop"
DONE = {TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED}


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[AsyncClient]:
    """An AsyncClient of the bootstrap admin."""
    async with await AsyncClient.connect(server.target, api_key=ADMIN_KEY) as connected:
        yield connected


def template(
    name: str,
    step_handler: str,
    *depends_on: str,
    max_attempts: int = 3,
    backoff: float = 0.01,
    lease_timeout: float | None = None,
) -> StepTemplate:
    """A step template with a quick retry policy."""
    return StepTemplate(
        name=name,
        step_handler=step_handler,
        depends_on=list(depends_on),
        retry_policy=RetryPolicy(
            max_attempts=max_attempts,
            initial_backoff=datetime.timedelta(seconds=backoff),
            max_backoff=datetime.timedelta(seconds=max(backoff, 0.01)),
            backoff_coefficient=1.0,
        ),
        lease_timeout=datetime.timedelta(seconds=lease_timeout) if lease_timeout else None,
    )


async def register(client: AsyncClient, name: str, *steps: StepTemplate) -> Handler:
    """Register handler `name` in NS with these steps."""
    return await client.handlers.register(Handler(namespace=NS, name=name, version="1.0.0", steps=list(steps)))


async def finished(client: AsyncClient, task_id: str, timeout: float = 15.0) -> Task:
    """The task once it has finished (completed, failed or cancelled)."""
    async with asyncio.timeout(timeout):
        while True:
            task = await client.tasks.get(task_id)
            if task.state in DONE:
                return task
            await asyncio.sleep(0.05)
