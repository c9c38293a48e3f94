"""Run one peer end to end (enqueue N no-op tasks, wait until all are done) and print one JSON line.

Runs inside .venv/peers: `python run_peer.py huey|celery N`. The workers are started here as subprocesses
(huey_consumer with 2 worker threads; celery worker with 2 processes) and stopped at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def wait_until(predicate, limit: float) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.005)
    raise RuntimeError("peer did not finish in time")


def run_huey(count: int) -> dict[str, float]:
    sys.path.insert(0, str(HERE))
    from huey_app import huey, noop

    worker = subprocess.Popen(
        [str(BIN / "huey_consumer"), "huey_app.huey", "-w", "2", "-k", "thread", "-q", "-d", "0.001", "-m", "0.01"],
        cwd=HERE,
        env=os.environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        started = time.perf_counter()
        for index in range(count):
            noop(index)
        enqueued = time.perf_counter()
        wait_until(lambda: huey.storage.result_store_size() >= count, 600)
        finished = time.perf_counter()
    finally:
        worker.send_signal(signal.SIGINT)
        worker.wait(timeout=30)
    return {"enqueue_seconds": enqueued - started, "seconds": finished - started, "rate": count / (finished - started)}


def run_celery(count: int) -> dict[str, float]:
    sys.path.insert(0, str(HERE))
    import redis
    from celery_app import BROKER, noop

    counter = redis.Redis.from_url(BROKER)
    counter.delete("bench:done")
    worker = subprocess.Popen(
        [
            str(BIN / "celery"),
            "-A",
            "celery_app",
            "worker",
            "-c",
            "2",
            "-P",
            "prefork",
            "-l",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=HERE,
        env=os.environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        noop.delay(-1)
        wait_until(lambda: int(counter.get("bench:done") or 0) >= 1, 60)  # the worker is up
        counter.delete("bench:done")
        started = time.perf_counter()
        for index in range(count):
            noop.delay(index)
        enqueued = time.perf_counter()
        wait_until(lambda: int(counter.get("bench:done") or 0) >= count, 600)
        finished = time.perf_counter()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    return {"enqueue_seconds": enqueued - started, "seconds": finished - started, "rate": count / (finished - started)}


if __name__ == "__main__":
    peer, count = sys.argv[1], int(sys.argv[2])
    result = run_huey(count) if peer == "huey" else run_celery(count)
    print(json.dumps(result))
