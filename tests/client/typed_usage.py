"""Typed use of baton.client, checked by `mypy --strict` in tests/client/test_exports.py (never run).

The `type: ignore[...]` lines prove that mypy catches misuse: with `warn_unused_ignores` (part of --strict) an
ignore that is not needed is itself an error.
"""

from __future__ import annotations

import contextlib
import datetime

from baton.client import (
    AsyncClient,
    BatonError,
    CallInfo,
    Client,
    FieldViolation,
    InvalidArgumentError,
    RateLimitedError,
    RetryPolicy,
    TLSConfig,
    step_completion,
)
from baton_betterproto.baton.v1 import Handler, Lease, LeaseOutcome, Task, TaskState, WatchTaskResponse


def sync_usage(target: str, key: str) -> list[str]:
    with Client.connect(target, api_key=key, retry_policy=RetryPolicy(max_attempts=3), metrics=True) as client:
        task: Task = client.tasks.create("shop", "order", {"order_id": 42}, tags=["web"], request_id="order-42")
        state: TaskState = client.tasks.get(task.id, timeout=2.5).state
        events: list[WatchTaskResponse] = []
        with contextlib.closing(client.tasks.watch(task.id)) as watch:
            events.extend(watch)
        call: CallInfo | None = client.last_call
        try:
            client.handlers.register(Handler(namespace="shop", name="order", version="1"))
        except InvalidArgumentError as error:
            violations: list[FieldViolation] = error.field_violations
            return [v.field for v in violations]
        except RateLimitedError as error:
            delay: datetime.timedelta | None = error.retry_delay
            return [str(delay)]
        except BatonError as error:
            return [error.code.name, error.reason, error.request_id]
        client.tasks.get(42)  # type: ignore[arg-type]
        client.tasks.get("t", timeout="soon")  # type: ignore[arg-type]
        client.tasks.get("t", retries=3)  # type: ignore[call-arg]
        return [state.name, str(call), str(len(events))]


async def async_usage(target: str) -> list[LeaseOutcome]:
    tls = TLSConfig(ca_cert_file="ca.pem")
    async with await AsyncClient.connect(target, username="worker", password="secret", tls=tls) as client:
        leases: list[Lease] = await client.workers.poll("shop", ["payments.charge"], max_steps=10, max_wait=30)
        outcomes = await client.workers.complete("w-1", [step_completion(lease, {"ok": True}) for lease in leases])
        async for item in client.tasks.watch("t-1", request_id="watch-1"):
            snapshot: Task | None = item.snapshot
            del snapshot
        wrong: str = await client.tasks.get("t")  # type: ignore[assignment]
        del wrong
        return outcomes
