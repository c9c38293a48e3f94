"""The AsyncClient against the real server: every RPC of every service, through grpclib."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import pytest

from baton.client import AsyncClient, NotFoundError, UnauthenticatedError, step_completion, step_failure
from baton.client import create_task_request as entry
from baton_betterproto.baton.v1 import Role, StepState, TaskState, WatchTaskResponse
from tests.client.conftest import NS, PASSWORD, diamond, user
from tests.support.server import ADMIN_KEY, RunningServer


async def test_handlers_and_tasks(server: RunningServer) -> None:
    async with await AsyncClient.connect(server.target, api_key=ADMIN_KEY) as client:
        registered = await client.handlers.register(diamond())
        assert await client.handlers.register(diamond()) == registered
        assert (await client.handlers.get(NS, "diamond")).version == "1.0.0"
        assert [h.name for h in (await client.handlers.list(NS)).handlers] == ["diamond"]
        assert [n.name for n in (await client.handlers.list_namespaces()).namespaces] == [NS]

        task = await client.tasks.create(NS, "diamond", {"order": 7}, tags=["api"], request_id="o-7")
        assert await client.tasks.create(NS, "diamond", {"order": 7}, tags=["api"], request_id="o-7") == task
        assert await client.tasks.get(task.id) == task
        batch = await client.tasks.batch_create(NS, [entry(NS, "diamond", request_id=f"b-{n}") for n in range(2)])
        assert len(batch) == 2
        assert [t.id for t in (await client.tasks.list(NS, filter='tags:"api"')).tasks] == [task.id]
        assert len((await client.tasks.graph(task.id)).nodes) == 4
        resolved = await client.tasks.resolve_step(batch[0].id, "fetch", {"by": "hand"})
        assert next(s for s in resolved.steps if s.name == "fetch").state == StepState.RESOLVED_MANUALLY
        assert (await client.tasks.cancel(batch[1].id)).state == TaskState.CANCELLED


async def _watch(client: AsyncClient, task_id: str) -> list[WatchTaskResponse]:
    async with aclosing(client.tasks.watch(task_id)) as stream:
        return [item async for item in stream]


async def test_worker_flow_while_watching(server: RunningServer) -> None:
    async with await AsyncClient.connect(server.target, api_key=ADMIN_KEY) as client:
        await client.handlers.register(diamond())
        task = await client.tasks.create(NS, "diamond", {"order": 1})
        watching = asyncio.create_task(_watch(client, task.id))

        [fetch] = await client.workers.poll(NS, ["work.fetch"], worker_id="w-1", max_wait=2)
        [beat] = await client.workers.heartbeat("w-1", [fetch])
        assert beat.code == 0
        await client.workers.complete("w-1", [step_completion(fetch, {"ok": 1})])
        sides = await client.workers.poll(NS, ["work.side"], worker_id="w-1", max_steps=2, max_wait=2)
        assert sorted(lease.step_name for lease in sides) == ["left", "right"]
        left, right = sorted(sides, key=lambda lease: lease.step_name)
        await client.workers.complete("w-1", [step_completion(left)])
        [retried] = await client.workers.fail("w-1", [step_failure(right, "Flaky", retry_after=0.01)])
        assert retried.step_state == StepState.READY
        [again] = await client.workers.poll(NS, ["work.side"], worker_id="w-1", max_wait=2)
        assert (again.step_name, again.attempt) == ("right", 2)
        await client.workers.complete("w-1", [step_completion(again)])
        [merge] = await client.workers.poll(NS, ["work.merge"], worker_id="w-1", max_wait=2)
        await client.workers.complete("w-1", [step_completion(merge)])

        items = await asyncio.wait_for(watching, 10)
        assert items[0].snapshot is not None
        assert items[0].snapshot.id == task.id
        events = [item.event for item in items[1:] if item.event is not None]
        assert events[-1].task_state == TaskState.COMPLETED
        assert [e.sequence for e in events] == sorted(e.sequence for e in events)
        assert (await client.tasks.get(task.id)).state == TaskState.COMPLETED

        failed_task = await client.tasks.create(NS, "diamond")
        [lease] = await client.workers.poll(NS, ["work.fetch"], max_wait=2)
        await client.workers.fail("w-1", [step_failure(lease, "Fatal", retryable=False)])
        assert (await client.tasks.get(failed_task.id)).state == TaskState.FAILED
        assert (await client.tasks.retry(failed_task.id)).state != TaskState.FAILED

        with pytest.raises(NotFoundError):
            await _watch(client, "no-such-task")


async def test_accounts_and_admin(server: RunningServer) -> None:
    async with await AsyncClient.connect(server.target, api_key=ADMIN_KEY) as admin:
        assert (await admin.auth.who_am_i()).auth_method == "api_key"
        bob = await admin.users.create(user("bob", Role.OPERATOR, human=True), password=PASSWORD)
        assert (await admin.users.get(bob.id)).username == "bob"
        assert "bob" in {u.username for u in (await admin.users.list()).users}
        bob.display_name = "Bob"
        assert (await admin.users.update(bob, ["display_name"])).display_name == "Bob"
        created = await admin.users.create_api_key(bob.id, "ci")
        assert created.api_key is not None
        assert len((await admin.users.list_api_keys(bob.id)).api_keys) == 1
        login = await admin.auth.login("bob", PASSWORD)
        refreshed = await admin.auth.refresh_token(login.refresh_token)
        await admin.auth.revoke_token(refreshed.refresh_token)
        with pytest.raises(UnauthenticatedError):
            await admin.auth.refresh_token(refreshed.refresh_token)
        await admin.users.revoke_api_key(created.api_key.id)
        assert (await admin.admin.get_status()).serving
        assert isinstance((await admin.admin.list_audit_events(page_size=5)).audit_events, list)
        await admin.users.delete(bob.id)
        with pytest.raises(NotFoundError):
            await admin.users.get(bob.id)
