"""Group commit: calls that arrive while a batch is being written go together into the next transaction.

CreateTask is one small insert per call, and a transaction costs far more than the rows in it. The first call to
arrive starts a flusher; every call arriving before it runs, or while its transaction is in flight, joins the next
batch (up to `max_batch`). A lone call is written at once — nothing waits for company — so latency at low load is
one transaction, and at high load the batch grows by itself.

With a `turn` (the store's `write_turn`: on SQLite, the moment the writer's next transaction takes its group), the
flusher takes its batch only then, so the calls that came during the writer's group-commit window go into the
transaction that window was for. Taking the batch as soon as the flusher ran instead would hand the writer the
first call alone and leave every later one of the window to the transaction after it: a whole window more of
waiting for most calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741
R = TypeVar("R")


class Coalescer(Generic[I, R]):
    """Writes submitted items in batches; `write` answers each item with a result or the exception to raise."""

    def __init__(
        self,
        write: Callable[[list[I]], Awaitable[list[R | Exception]]],
        max_batch: int,
        turn: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._turn = turn
        self._queue: list[tuple[I, asyncio.Future[R]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: I) -> R:
        """Write `item` with whatever else is queued; its result, or its exception raised.

        A cancelled caller does not take its item out of a batch already being written."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="baton-group-commit")
        return await future

    async def _flush(self) -> None:
        batch: list[tuple[I, asyncio.Future[R]]] = []
        try:
            while self._queue:
                if self._turn is not None:
                    await self._turn()
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                try:
                    results: list[R | Exception] = await self._write([item for item, _ in batch])
                except Exception as error:  # noqa: BLE001 - the transaction failed: each caller of the batch gets it
                    results = [error] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                batch = []
        except asyncio.CancelledError:  # shutdown: nobody may wait forever
            for _, future in batch + self._queue:
                future.cancel()
            self._queue = []
            raise
        finally:
            self._flusher = None
