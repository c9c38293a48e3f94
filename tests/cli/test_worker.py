"""`baton worker run MODULE:ATTR` as a real process: it imports the factory from the current directory, runs the
Worker SDK's worker until SIGTERM, and turns a bad MODULE:ATTR into one line."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import ADMIN_KEY, BATON, ORDER_YAML, Baton

WORKER_MODULE = """
from baton.worker import Worker, step


@step("stock.reserve")
async def reserve(ctx):
    return {"reserved": ctx.context.get("order_id")}


@step("payments.charge")
def charge(ctx):
    return {"charged": True}


@step("mail.notify")
async def notify(ctx):
    return {}


@step("shipping.ship")
async def ship(ctx):
    return {"shipped": True}


async def build_worker(client):
    return Worker(client, namespace="shop", handlers=[reserve, charge, notify, ship])
"""


async def test_worker_runs_tasks_to_completion_and_stops_on_sigterm(baton: Baton, tmp_path: Path) -> None:
    (tmp_path / "order.yaml").write_text(ORDER_YAML)
    assert (await baton("handlers", "register", "-f", str(tmp_path / "order.yaml"))).exit_code == 0
    (tmp_path / "shop_worker.py").write_text(WORKER_MODULE)
    env = {**os.environ, "BATON_TARGET": baton.target, "BATON_API_KEY": ADMIN_KEY, "PYTHONPATH": ""}
    proc = await asyncio.create_subprocess_exec(
        BATON,
        "worker",
        "run",
        "shop_worker:build_worker",
        "--max-concurrency",
        "4",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        task_id = (await baton.json("tasks", "create", "shop", "order", "-c", '{"order_id": 7}'))["id"]
        watched = await asyncio.wait_for(baton("tasks", "watch", task_id), 30)
        assert watched.exit_code == 0, watched.stderr
        task = await baton.json("tasks", "get", task_id)
        assert task["state"] == "TASK_STATE_COMPLETED"
        assert {s["name"]: s.get("result") for s in task["steps"]}["reserve"] == {"reserved": 7}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    text = err.decode()
    assert proc.returncode == 0, text
    assert "up to 4 steps at once, uvloop event loop" in text  # BATON_EVENT_LOOP unset: auto, and uvloop is installed
    assert "Traceback" not in text


async def test_bad_worker_specs_are_one_line_exit_2(baton: Baton, tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "notworker.py").write_text("def build_worker(client):\n    return 42\n")
    cases = {
        "no_colon": "expected MODULE:ATTRIBUTE",
        "nosuchmodule:build": "no such module",
        "broken:build": "RuntimeError: boom",
        "notworker:missing": "has no attribute 'missing'",
        "notworker:build_worker": "not a baton.worker.Worker",
    }
    for spec, message in cases.items():
        code, _, err = await baton.process("worker", "run", spec, cwd=tmp_path)
        assert code == 2, (spec, err)
        assert message in err, (spec, err)
        assert err.count("\n") == 1, (spec, err)


async def test_worker_event_loop_choice_is_checked_before_it_starts(
    baton: Baton, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shop_worker.py").write_text(WORKER_MODULE)
    spec = "shop_worker:build_worker"
    code, _, err = await baton.process("worker", "run", spec, "--event-loop", "libev", cwd=tmp_path)
    assert (code, err) == (2, "baton: --event-loop: 'libev' is not one of auto, uvloop, asyncio\n")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what importing it does where it is not installed
    result = await baton("worker", "run", spec, "--event-loop", "uvloop")
    assert result.exit_code == 2
    assert "--event-loop: uvloop is not installed" in result.stderr
