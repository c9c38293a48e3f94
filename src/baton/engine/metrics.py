"""Domain metrics of the engine: tasks created and finished, the ready queue, leases and pollers.

Counters move after the transaction that caused them commits. The ready-queue depth and the active leases are
database facts shared by every replica, so a sampler reads them (one grouped count) every SAMPLE_INTERVAL seconds
rather than each replica guessing from its own traffic; pollers are this process's own long-polls.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from baton.domain.states import StepState
from baton.observability.logging import get_logger
from baton.store import SqlStore
from baton.store.tables import steps

log = get_logger(__name__)
#: Seconds between two samples of the ready queue and the active leases.
SAMPLE_INTERVAL = 2.0

TASKS_CREATED = Counter("baton_tasks_created_total", "Tasks created.", ["namespace", "handler"])
TASKS_FINISHED = Counter(
    "baton_tasks_finished_total",
    "Tasks that reached an end state, by outcome (completed, failed, cancelled).",
    ["namespace", "handler", "outcome"],
)
EAGER_LEASES = Counter(
    "baton_eager_leases_total",
    "Leases handed to waiting workers inside the transaction that created their steps (eager dispatch).",
    ["namespace"],
)
READY_STEPS = Gauge("baton_ready_steps", "Steps READY and waiting for a worker (the ready queue).", ["namespace"])
ACTIVE_LEASES = Gauge("baton_active_leases", "Steps RUNNING under a worker's lease.", ["namespace"])
ACTIVE_POLLERS = Gauge("baton_active_pollers", "PollSteps calls waiting in this server process.", ["namespace"])


@contextmanager
def polling(namespace: str) -> Iterator[None]:
    """Count a PollSteps call as an active poller while it runs."""
    gauge = ACTIVE_POLLERS.labels(namespace)
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


def _depths(connection: Connection) -> list[tuple[str, str, int]]:
    query = (
        select(steps.c.namespace, steps.c.state, func.count())
        .where(steps.c.state.in_([StepState.READY.value, StepState.RUNNING.value]))
        .group_by(steps.c.namespace, steps.c.state)
    )
    return [(namespace, state, int(count)) for namespace, state, count in connection.execute(query)]


class QueueSampler:
    """Samples the ready-queue depth and the active leases per namespace into their gauges."""

    def __init__(self, store: SqlStore, interval: float = SAMPLE_INTERVAL) -> None:
        self._store = store
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._seen: set[str] = set()

    async def sample(self) -> None:
        """Read the counts once and set the gauges (namespaces that emptied go to zero)."""
        rows = await self._store.run_read(_depths)
        gauges: dict[str, Callable[[str], Gauge]] = {
            StepState.READY.value: READY_STEPS.labels,
            StepState.RUNNING.value: ACTIVE_LEASES.labels,
        }
        current = {namespace for namespace, _, _ in rows}
        for namespace in self._seen | current:
            READY_STEPS.labels(namespace).set(0)
            ACTIVE_LEASES.labels(namespace).set(0)
        for namespace, state, count in rows:
            gauges[state](namespace).set(count)
        self._seen |= current

    def start(self) -> None:
        """Sample now and then every interval, until `stop()`."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="baton-queue-sampler")

    async def stop(self) -> None:
        """Stop sampling."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await self.sample()
            except Exception:  # a database hiccup must not stop the sampler
                log.exception("metrics.sample_failed")
            await asyncio.sleep(self._interval)
