"""The README's CLI walk-through, step by step, as a new user runs it: an API key for a service account, the
example handler registered, its worker running, tasks submitted, one watched and graphed, another cancelled."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from tests.cli.conftest import BATON, Baton

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "order_fulfilment"
ORDER = '{"order_id": 42, "email": "ada@example.com", "items": [{"sku": "SKU-0001", "qty": 2}], "amount_cents": 1998}'


async def test_the_readme_walk_through(baton: Baton) -> None:
    created = await baton(
        "users", "create", "shop-bot", "--service", "--role", "developer:shop", "--role", "worker:shop"
    )
    assert created.exit_code == 0, created.stderr
    key = (await baton("keys", "create", "shop-bot", "--name", "demo")).stdout.strip()
    assert key.startswith("bk_")

    registered = await baton("handlers", "register", "-f", str(EXAMPLE / "handler.yaml"), api_key=key)
    assert registered.exit_code == 0, registered.stderr

    # a task submitted while no worker runs waits, and can be cancelled
    waiting = (await baton("tasks", "create", "shop", "order_fulfilment", "-c", ORDER, "-q", api_key=key)).stdout
    cancelled = await baton("tasks", "cancel", waiting.strip(), "--reason", "customer changed their mind", api_key=key)
    assert cancelled.exit_code == 0, cancelled.stderr

    env = {**os.environ, "BATON_TARGET": baton.target, "BATON_API_KEY": key}
    worker = await asyncio.create_subprocess_exec(
        BATON, "worker", "run", "worker:build_worker", cwd=EXAMPLE, env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        task_id = (await baton("tasks", "create", "shop", "order_fulfilment", "-c", ORDER, "-q", api_key=key)).stdout
        many = await baton("tasks", "create", "shop", "order_fulfilment", "-c", ORDER, "--count", "100", api_key=key)
        assert many.exit_code == 0, many.stderr
        watched = await asyncio.wait_for(baton("tasks", "watch", task_id.strip(), api_key=key), 60)
        assert watched.exit_code == 0, watched.stdout
        graph = await baton("tasks", "graph", task_id.strip(), api_key=key)
        assert "critical path: reserve_stock → " in graph.stdout
        listed = await baton("tasks", "list", "shop", "--filter", "state = CANCELLED", api_key=key)
        assert waiting.strip() in listed.stdout
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(worker.communicate(), 60)
    assert worker.returncode == 0, err.decode()[-2000:]
