"""The Celery side of scripts/bench/tasks: a Redis broker, a no-op task counting itself done in Redis."""

from __future__ import annotations

import os

import redis
from celery import Celery

BROKER = os.environ["BENCH_REDIS_URL"]
app = Celery("bench", broker=BROKER)
app.conf.update(task_ignore_result=True, worker_prefetch_multiplier=64, broker_connection_retry_on_startup=True)
_counter = redis.Redis.from_url(BROKER)


@app.task(name="bench.noop")
def noop(index: int) -> None:
    """Do nothing but count the task done."""
    _counter.incr("bench:done")
