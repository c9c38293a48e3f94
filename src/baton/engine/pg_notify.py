"""Wake-ups across replicas on PostgreSQL: LISTEN/NOTIFY under the in-process Notifier.

Every replica keeps one asyncpg connection of its own (outside the pool) that LISTENs on two channels. When this
process's Notifier is told after a commit that steps became ready or a task changed, the bridge sends the same
hints with `pg_notify` — gathered per loop turn into one statement per channel — and every replica (this one too,
harmlessly) wakes its own pollers and watchers. Wake-ups stay hints: a waiter re-reads the database, and a lost one
costs at most the waiter's `max_wait`. When the connection drops, the bridge logs it once, retries with capped
backoff, and wakes every local waiter on reconnect so nothing sleeps through the gap.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sqlalchemy.engine import make_url

from baton.engine.notify import Notifier
from baton.observability.logging import get_logger

log = get_logger(__name__)

STEPS_CHANNEL = "baton_steps"
TASKS_CHANNEL = "baton_tasks"
#: Longest payload sent at once (PostgreSQL's limit is 8000 bytes).
MAX_PAYLOAD = 7000
#: Reconnect backoff bounds, in seconds.
RECONNECT_MIN, RECONNECT_MAX = 0.2, 5.0


def asyncpg_dsn(database_url: str) -> str:
    """The asyncpg DSN of a `postgresql+asyncpg://` SQLAlchemy URL."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def _chunks(lines: list[str]) -> list[str]:
    payloads, current = [], ""
    for line in sorted(set(lines)):
        if current and len(current) + len(line) + 1 > MAX_PAYLOAD:
            payloads.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    if current:
        payloads.append(current)
    return payloads


class PgNotifyBridge:
    """Publishes this process's wake-ups with NOTIFY and turns other replicas' into local ones."""

    def __init__(self, notifier: Notifier, dsn: str) -> None:
        self._notifier = notifier
        self._dsn = dsn
        self._connection: Any = None
        self._pending: dict[str, list[str]] = {STEPS_CHANNEL: [], TASKS_CHANNEL: []}
        self._flush_scheduled = False
        self._runner: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- publishing ------------------------------------------------------------------------------------------------

    def steps_ready(self, namespace: str, step_handlers: list[str]) -> None:
        """Tell every replica that steps of these step handlers became ready in `namespace`."""
        self._queue(STEPS_CHANNEL, [f"{namespace}\t{handler}" for handler in step_handlers])

    def task_changed(self, task_id: str) -> None:
        """Tell every replica that the task changed."""
        self._queue(TASKS_CHANNEL, [task_id])

    def _queue(self, channel: str, lines: list[str]) -> None:
        if self._connection is None:
            return
        self._pending[channel] += lines
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._start_flush)

    def _start_flush(self) -> None:
        task = asyncio.create_task(self._flush())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self) -> None:
        self._flush_scheduled = False
        pending = {channel: lines for channel, lines in self._pending.items() if lines}
        self._pending = {STEPS_CHANNEL: [], TASKS_CHANNEL: []}
        connection = self._connection
        if connection is None or not pending:
            return
        try:
            for channel, lines in pending.items():
                for payload in _chunks(lines):
                    await connection.execute("SELECT pg_notify($1, $2)", channel, payload)
        except Exception:  # the listener loop notices the dead connection and reconnects
            log.warning("notify.publish_failed", exc_info=True)

    # -- listening -------------------------------------------------------------------------------------------------

    def _on_notification(self, _connection: Any, _pid: int, channel: str, payload: str) -> None:
        if channel == STEPS_CHANNEL:
            by_namespace: dict[str, list[str]] = {}
            for line in payload.splitlines():
                namespace, _, handler = line.partition("\t")
                by_namespace.setdefault(namespace, []).append(handler)
            for namespace, handlers in by_namespace.items():
                self._notifier.wake_steps(namespace, handlers)
        elif channel == TASKS_CHANNEL:
            for task_id in payload.splitlines():
                self._notifier.wake_task(task_id)

    def _on_lost(self, _connection: Any) -> None:
        self._lost.set()

    async def start(self) -> None:
        """Connect and listen (the first connection is awaited; a failure there is logged, then retried)."""
        if self._runner is None:
            with contextlib.suppress(Exception):
                await self._connect()
            self._runner = asyncio.create_task(self._keep_connected(), name="baton-pg-notify")

    async def _connect(self) -> None:
        import asyncpg  # type: ignore[import-untyped]  # imported only with PostgreSQL

        connection = await asyncpg.connect(self._dsn, timeout=10, server_settings={"application_name": "baton-notify"})
        self._lost.clear()
        connection.add_termination_listener(self._on_lost)
        await connection.add_listener(STEPS_CHANNEL, self._on_notification)
        await connection.add_listener(TASKS_CHANNEL, self._on_notification)
        self._connection = connection

    async def _keep_connected(self) -> None:
        delay = RECONNECT_MIN
        while True:
            if self._connection is not None and not self._connection.is_closed():
                await self._lost.wait()
            self._connection = None
            log.warning("notify.disconnected")
            while self._connection is None:
                try:
                    await self._connect()
                except Exception:  # noqa: BLE001 - any failure to connect is retried after the backoff
                    await asyncio.sleep(delay)
                    delay = min(RECONNECT_MAX, delay * 2)
            delay = RECONNECT_MIN
            log.info("notify.reconnected")
            self._notifier.wake_all()  # hints may have been missed while disconnected

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close(timeout=2)
