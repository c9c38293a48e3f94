"""In-process wake-ups: long-polling workers wait for ready steps, WatchTask streams wait for task events.

Writers call `steps_ready(namespace, step_handlers)` / `task_changed(task_id)` after their transaction commits;
waiters call `wait_for_steps(...)` / `wait_for_task(...)`, which return True when woken and False on timeout. A
wake-up is a hint, never a promise: the waiter re-reads the database. `close()` wakes every waiter for good
(shutdown), and `closed` tells long-polls to return early. One notifier per server process; on PostgreSQL a
publisher (engine/pg_notify.py) carries the same hints to the other replicas with LISTEN/NOTIFY and calls
`wake_steps` / `wake_task` with theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Protocol


class Publisher(Protocol):
    """Carries wake-ups to other processes."""

    def steps_ready(self, namespace: str, step_handlers: list[str]) -> None: ...

    def task_changed(self, task_id: str) -> None: ...


class Notifier:
    """Wakes waiters keyed by (namespace, step handler) or by task ID; no polling, no lost wake-ups."""

    def __init__(self) -> None:
        self._steps: defaultdict[tuple[str, str], set[asyncio.Event]] = defaultdict(set)
        self._tasks: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self.closed = False
        self.publisher: Publisher | None = None
        #: The store's write sequence (SqlStore.write_sequence) when it has one: each wake-up of steps is stamped
        #: with its value, so a poll can tell a hint a claim already covered from a newer one (`hinted_since`).
        self.sequence: Callable[[], int | None] = lambda: None
        self._hinted: dict[tuple[str, str], int] = {}
        self._hinted_all = 0

    def steps_ready(self, namespace: str, step_handlers: Iterable[str]) -> None:
        """Steps of these step handlers in `namespace` became ready (or will at a timer): wake their pollers, here
        and (through the publisher) in other processes."""
        handlers = list(step_handlers)
        self.wake_steps(namespace, handlers)
        if self.publisher is not None:
            self.publisher.steps_ready(namespace, handlers)

    def task_changed(self, task_id: str) -> None:
        """A task (or one of its steps) changed: wake its watchers, here and in other processes."""
        self.wake_task(task_id)
        if self.publisher is not None:
            self.publisher.task_changed(task_id)

    def hinted_since(self, namespace: str, step_handlers: Iterable[str], sequence: int) -> bool:
        """Whether steps of these handlers may have become ready in a write transaction numbered above `sequence`
        (True when the store has no write sequence: then every wake-up counts)."""
        if self.sequence() is None or self._hinted_all > sequence:
            return True
        return any(self._hinted.get((namespace, handler), 0) > sequence for handler in step_handlers)

    def wake_steps(self, namespace: str, step_handlers: Iterable[str]) -> None:
        """Wake this process's pollers of these step handlers."""
        step_handlers = list(step_handlers)
        stamp = self.sequence()
        if stamp is not None:  # at least the number of the transaction that made them ready
            for handler in step_handlers:
                self._hinted[(namespace, handler)] = stamp
        for handler in step_handlers:
            for event in self._steps.get((namespace, handler), ()):
                event.set()

    def wake_task(self, task_id: str) -> None:
        """Wake this process's watchers of the task."""
        for event in self._tasks.get(task_id, ()):
            event.set()

    def wake_all(self) -> None:
        """Wake every waiter of this process once (they re-read the database)."""
        self._hinted_all = self.sequence() or 0
        for events in (*self._steps.values(), *self._tasks.values()):
            for event in events:
                event.set()

    async def wait_for_steps(self, namespace: str, step_handlers: Iterable[str], max_wait: float) -> bool:
        """Wait until steps of any of `step_handlers` may be ready, at most `max_wait` seconds."""
        keys = [(namespace, handler) for handler in step_handlers]
        event = asyncio.Event()
        for key in keys:
            self._steps[key].add(event)
        try:
            return await self._wait(event, max_wait)
        finally:
            for key in keys:
                waiters = self._steps.get(key)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        del self._steps[key]

    async def wait_for_task(self, task_id: str, max_wait: float) -> bool:
        """Wait until the task changes, at most `max_wait` seconds."""
        event = asyncio.Event()
        self._tasks[task_id].add(event)
        try:
            return await self._wait(event, max_wait)
        finally:
            waiters = self._tasks.get(task_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._tasks[task_id]

    def waiting_pollers(self) -> int:
        """Pollers currently waiting (a gauge for metrics)."""
        return len({id(event) for events in self._steps.values() for event in events})

    def close(self) -> None:
        """Shutdown: wake every waiter now and every later one at once."""
        self.closed = True
        self.wake_all()

    async def _wait(self, event: asyncio.Event, max_wait: float) -> bool:
        if self.closed:
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, max_wait)):
                await event.wait()
                return not self.closed
        return False
