"""Eager dispatch: steps made READY by a new task go straight to workers already waiting for them.

A poller that found nothing registers a `WaitingPoll` and sleeps. Before a creating transaction starts, the task
engine reserves the waiting polls of the step handlers its new tasks make READY (`reserve`, on the event loop);
inside the transaction the dispatcher claims steps for them exactly as a poll would (the same atomic claim, events
and fencing tokens); after the commit each reserved poll is answered with its leases (`hand_over`), so the worker
gets its step one transaction and no wake-up after the task was created. A reserved poll that got nothing (another
handler's step, or a full batch) is answered with no leases and simply looks again. Polls are reserved oldest
first, each by one transaction at a time. SQLite only (see TaskEngine._write).

A waiting poll awaits its `handoff` future and nothing else: wake-ups and the end of its wait resolve that future
too (with no leases). So leases handed over reach the worker's call one loop turn after the commit, ahead of the
creating call's own answer. A poll whose caller went away (cancelled) while a transaction held it gets its leases
handed back by the dispatcher (see Dispatcher.handed).

When no older READY step of a reserved poll's handlers waits, the transaction does not claim at all: it inserts
the new steps already leased (Dispatcher.lease_new).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from baton.engine.dispatch_sql import Lease


@dataclass(eq=False)
class WaitingPoll:
    """A PollSteps call waiting for steps; `handoff` gets the leases a creating transaction claimed for it."""

    namespace: str
    handlers: tuple[str, ...]
    worker_id: str
    max_steps: int
    handoff: asyncio.Future[list[Lease]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    reserved: bool = False

    def wake(self, _: object = None) -> None:
        """End the wait with no leases (a wake-up or the wait's end), unless a transaction holds the poll: then its
        answer comes when that transaction ends."""
        if not self.reserved and not self.handoff.done():
            self.handoff.set_result([])

    @property
    def gone(self) -> bool:
        """Whether the poll's caller stopped waiting (cancelled) before it was answered."""
        return self.handoff.cancelled()


class Handoffs:
    """The waiting polls of this process, by namespace, oldest first."""

    def __init__(self) -> None:
        self._waiting: dict[str, list[WaitingPoll]] = {}

    def wait(self, poll: WaitingPoll) -> None:
        """Register a poll that found nothing and is about to sleep."""
        self._waiting.setdefault(poll.namespace, []).append(poll)

    def leave(self, poll: WaitingPoll) -> None:
        """Unregister a poll that stops waiting (a reserved one is no longer listed)."""
        polls = self._waiting.get(poll.namespace)
        if polls is not None and poll in polls:
            polls.remove(poll)
            if not polls:
                del self._waiting[poll.namespace]

    def waiting(self, namespace: str) -> int:
        """How many polls of `namespace` wait unreserved."""
        return len(self._waiting.get(namespace, ()))

    def reserve(self, namespace: str, handlers: Iterable[str]) -> list[WaitingPoll]:
        """Take the waiting polls of `namespace` that serve any of `handlers`, for one transaction."""
        wanted = set(handlers)
        polls = self._waiting.get(namespace, [])
        taken = [p for p in polls if not p.handoff.done() and wanted.intersection(p.handlers)]
        for poll in taken:
            polls.remove(poll)
            poll.reserved = True
        if not polls:
            self._waiting.pop(namespace, None)
        return taken

    @staticmethod
    def hand_over(reserved: Iterable[WaitingPoll], given: dict[WaitingPoll, list[Lease]]) -> None:
        """After the transaction (committed or not): answer every reserved poll, with its leases or none."""
        for poll in reserved:
            if not poll.handoff.done():
                poll.handoff.set_result(given.get(poll, []))
