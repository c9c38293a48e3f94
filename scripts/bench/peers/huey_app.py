"""The huey side of scripts/bench/tasks: SqliteHuey, a no-op task whose result marks it done."""

from __future__ import annotations

import os

from huey import SqliteHuey

huey = SqliteHuey("bench", filename=os.environ["BENCH_HUEY_DB"], results=True)


@huey.task()
def noop(index: int) -> int:
    """Do nothing; the stored result marks the task done."""
    return index
