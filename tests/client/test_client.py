"""The sync Client against the real server: every RPC of every service, through grpcio.

The server runs on the test's event loop, so the client runs in a worker thread (asyncio.to_thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from baton.client import Client, NotFoundError, UnauthenticatedError, step_completion, step_failure
from baton.client import create_task_request as entry
from baton_betterproto.baton.v1 import Role, StepState, TaskState
from tests.client.conftest import NS, PASSWORD, diamond, user
from tests.support.server import ADMIN_KEY, RunningServer


def _handlers_and_tasks(target: str) -> None:
    with Client.connect(target, api_key=ADMIN_KEY) as client:
        registered = client.handlers.register(diamond())
        assert [s.name for s in registered.steps] == ["fetch", "left", "right", "merge"]
        assert client.handlers.register(diamond()) == registered  # idempotent
        client.handlers.register(diamond(version="1.1.0"))
        assert client.handlers.get(NS, "diamond").version == "1.1.0"
        assert client.handlers.get(NS, "diamond", "1.0.0").definition_digest == registered.definition_digest
        assert {h.version for h in client.handlers.list(NS).handlers} == {"1.0.0", "1.1.0"}
        assert [h.version for h in client.handlers.list(NS, latest_only=True).handlers] == ["1.1.0"]
        assert [n.name for n in client.handlers.list_namespaces().namespaces] == [NS]

        task = client.tasks.create(NS, "diamond", {"order": 42}, version="1.0.0", tags=["web"], request_id="o-42")
        assert (task.state, task.request_id, task.correlation_id) == (TaskState.PENDING, "o-42", "o-42")
        assert task.context is not None
        assert task.context.to_dict() == {"order": 42}
        assert (
            client.tasks.create(NS, "diamond", {"order": 42}, version="1.0.0", tags=["web"], request_id="o-42") == task
        )
        assert client.tasks.get(task.id) == task
        partial = client.tasks.get(task.id, read_mask=["id", "state"])
        assert (partial.id, partial.state, partial.steps) == (task.id, TaskState.PENDING, [])

        batch = client.tasks.batch_create(NS, [entry(NS, "diamond", {"n": n}, request_id=f"b-{n}") for n in range(3)])
        assert len(batch) == 3
        page = client.tasks.list(NS, filter='tags:"web"', page_size=10)
        assert [t.id for t in page.tasks] == [task.id]
        assert len(client.tasks.list(NS, page_size=2).tasks) == 2

        graph = client.tasks.graph(task.id)
        assert graph.task_id == task.id
        assert {n.step_name for n in graph.nodes} == {"fetch", "left", "right", "merge"}

        resolved = client.tasks.resolve_step(batch[0].id, "fetch", {"skipped": True}, reason="by hand")
        fetch = next(s for s in resolved.steps if s.name == "fetch")
        assert fetch.state == StepState.RESOLVED_MANUALLY
        cancelled = client.tasks.cancel(batch[1].id, reason="not needed")
        assert cancelled.state == TaskState.CANCELLED
        assert client.tasks.cancel(batch[1].id).state == TaskState.CANCELLED  # idempotent


async def test_handlers_and_tasks(server: RunningServer) -> None:
    await asyncio.to_thread(_handlers_and_tasks, server.target)


def _worker_flow(target: str) -> None:
    with Client.connect(target, api_key=ADMIN_KEY) as client:
        client.handlers.register(diamond())
        task = client.tasks.create(NS, "diamond", {"order": 1})
        [fetch] = client.workers.poll(NS, ["work.fetch"], worker_id="w-1", max_wait=2)
        assert (fetch.task_id, fetch.step_name, fetch.attempt) == (task.id, "fetch", 1)
        [beat] = client.workers.heartbeat("w-1", [fetch])
        assert beat.code == 0
        assert not beat.cancel_requested
        [done] = client.workers.complete("w-1", [step_completion(fetch, {"fetched": True})])
        assert (done.code, done.step_state) == (0, StepState.COMPLETED)

        sides = client.workers.poll(NS, ["work.side"], worker_id="w-1", max_steps=2, max_wait=2)
        left = next(lease for lease in sides if lease.step_name == "left")
        right = next(lease for lease in sides if lease.step_name == "right")
        assert left.dependency_results["fetch"].to_dict() == {"fetched": True}
        client.workers.complete("w-1", [step_completion(left)])
        [failed] = client.workers.fail("w-1", [step_failure(right, "Boom", "it broke", retryable=False)])
        assert failed.step_state == StepState.FAILED
        [stale] = client.workers.complete("w-1", [step_completion(right)])
        assert stale.code == 9  # FAILED_PRECONDITION: the lease is gone
        assert client.tasks.get(task.id).state == TaskState.FAILED

        client.tasks.retry(task.id)
        [again] = client.workers.poll(NS, ["work.side"], worker_id="w-1", max_wait=2)
        assert (again.step_name, again.attempt) == ("right", 1)
        client.workers.complete("w-1", [step_completion(again)])
        [merge] = client.workers.poll(NS, ["work.merge"], worker_id="w-1", max_wait=2)
        client.workers.complete("w-1", [step_completion(merge)])
        assert client.tasks.get(task.id).state == TaskState.COMPLETED
        assert client.workers.poll(NS, ["work.merge"], max_wait=0.1) == []

        # A finished task: the watch is a snapshot, then the stream ends.
        with contextlib.closing(client.tasks.watch(task.id)) as watch:
            items = list(watch)
        assert len(items) == 1
        assert items[0].snapshot is not None
        assert items[0].snapshot.state == TaskState.COMPLETED
        replayed = list(client.tasks.watch(task.id, after_sequence=1))
        assert replayed[0].snapshot is not None
        assert all(item.event is not None for item in replayed[1:])
        assert replayed[-1].event is not None
        assert replayed[-1].event.task_state == TaskState.COMPLETED
        with pytest.raises(NotFoundError):
            list(client.tasks.watch("no-such-task"))


async def test_worker_flow(server: RunningServer) -> None:
    await asyncio.to_thread(_worker_flow, server.target)


def _accounts_and_admin(target: str) -> None:
    with Client.connect(target, api_key=ADMIN_KEY) as admin:
        me = admin.auth.who_am_i()
        assert (me.user.username, me.auth_method) == ("admin", "api_key")
        alice = admin.users.create(user("alice", Role.VIEWER, human=True), password=PASSWORD)
        assert admin.users.get(alice.id).username == "alice"
        assert "alice" in {u.username for u in admin.users.list().users}
        alice.display_name = "Alice"
        assert admin.users.update(alice, ["display_name"]).display_name == "Alice"
        created = admin.users.create_api_key(alice.id, "laptop")
        assert created.key.startswith("bk_")
        assert created.api_key is not None
        assert [k.id for k in admin.users.list_api_keys(alice.id).api_keys] == [created.api_key.id]

        login = admin.auth.login("alice", PASSWORD)
        refreshed = admin.auth.refresh_token(login.refresh_token)
        assert refreshed.refresh_token != login.refresh_token
        admin.auth.revoke_token(refreshed.refresh_token)
        with pytest.raises(UnauthenticatedError):
            admin.auth.refresh_token(refreshed.refresh_token)

        with Client.connect(target, api_key=created.key) as as_alice:
            assert as_alice.auth.who_am_i().user.username == "alice"
        revoked = admin.users.revoke_api_key(created.api_key.id)
        assert revoked.revoke_time is not None

        status = admin.admin.get_status()
        assert status.serving
        assert status.database_backend == "sqlite"
        deadline = time.monotonic() + 5  # the audit log is written by a background writer
        while not (events := admin.admin.list_audit_events(filter='action = "login.succeeded"').audit_events):
            assert time.monotonic() < deadline, "no login.succeeded audit event"
            time.sleep(0.05)
        assert events[0].details["username"] == "alice"

        admin.users.delete(alice.id)
        with pytest.raises(NotFoundError):
            admin.users.get(alice.id)


async def test_accounts_and_admin(server: RunningServer) -> None:
    await asyncio.to_thread(_accounts_and_admin, server.target)
