"""examples/order_fulfilment end to end: a real `baton serve`, the example's worker and submit script as separate
processes, 50 orders with a flaky payment step, all completed with retries, in bounded time."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.e2e.conftest import REPO, BatonProcess

EXAMPLE = REPO / "examples" / "order_fulfilment"


def test_handler_json_matches_handler_yaml() -> None:
    definition = yaml.safe_load((EXAMPLE / "handler.yaml").read_text())
    assert json.loads((EXAMPLE / "handler.json").read_text()) == definition
    assert [s["name"] for s in definition["steps"]] == ["reserve_stock", "charge_card", "pack", "ship", "notify"]


def test_orders_are_fulfilled_despite_a_flaky_step(start_baton: Callable[..., BatonProcess], tmp_path: Path) -> None:
    baton = start_baton(BATON_LOG_LEVEL="warning")
    env = {**baton.env, "BATON_TARGET": baton.target, "BATON_API_KEY": baton.api_key, "FLAKY_RATE": "0.3"}
    worker_log = tmp_path / "worker.log"
    with worker_log.open("wb") as sink:
        worker = subprocess.Popen(
            [sys.executable, "worker.py"], cwd=EXAMPLE, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        started = time.monotonic()
        submit = subprocess.run(
            [sys.executable, "submit.py", "--tasks", "50", "--json", "--timeout", "60"],
            cwd=EXAMPLE,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        elapsed = time.monotonic() - started
        assert submit.returncode == 0, f"{submit.stdout}\n{submit.stderr}\n{worker_log.read_text()[-4000:]}"
        summary = json.loads(submit.stdout.strip().splitlines()[-1])
        assert (summary["tasks"], summary["completed"], summary["failed"], summary["unfinished"]) == (50, 50, 0, 0)
        assert summary["retries"] > 0
        assert set(summary["retries_by_step"]) == {"charge_card"}
        assert elapsed < 45
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=15)
    log = worker_log.read_text()
    assert code == 0, log[-4000:]
    assert "payment gateway timed out" in log
    assert "worker stopped" in log
