"""SQLite's write transactions on the event loop, its reads in threads: every transaction runs whole, in one go.

aiosqlite crosses to its thread once per statement (about 100 µs each here), and several pooled connections
writing at once meet at SQLite's file lock, whose busy handler sleeps. Here one writer connection runs each write
transaction whole — BEGIN IMMEDIATE, its statements, COMMIT — so writers queue in-process in arrival order; a few
reader threads run read-only transactions beside it (WAL lets readers see the last commit without waiting for the
writer).

Writes run on the event loop itself by default (`on_loop`). They used to run in a writer thread, which shared the
GIL with the loop: SQLite releases the GIL around every statement, and the writer then waited for the loop to give
it back, up to the switch interval each time, while the loop waited for the writer's results. That thread was busy
80 % of the time and on the CPU 37 %, and a task cost the server 1.2 ms of CPU; on the loop a task costs 0.8-1.0 ms
and `CreateTask` alone is about 1.45 times as fast (README, session 17). A transaction on the loop holds the loop for as
long as it runs, which the thread's GIL hand-offs also did for most of its Python work; SQLite's own work in it
(WAL, synchronous=NORMAL: no fsync at COMMIT) is tens of microseconds a task.

The writer connection never waits for SQLite's lock on the loop: its busy timeout is 0 there, and a BEGIN IMMEDIATE
that finds the database locked (another process writing the same file: a CLI, a second server) hands the group,
and the writes queued after it, to the writer thread, which waits for the lock up to the configured busy timeout as
before. Once the queue is empty, writes run on the loop again. With `on_loop=False`
(BATON_SQLITE_WRITES_ON_LOOP=false) every write goes to the writer thread.

The writer keeps its Connection between transactions: checking one out of the pool, setting its options and
closing it again cost a tenth of the writer's time, per transaction. An idle SQLite connection holds no lock, so
keeping it open costs nothing; one that SQLAlchemy invalidated (a disconnect) is replaced on the next transaction.

Checkpoints (copying the WAL back into the database file, with an fsync) run in a thread of their own, PASSIVE
(never waiting for a lock, never blocking the writer), at most every CHECKPOINT_INTERVAL seconds after writes.
Left to SQLite, the commit that takes the WAL past 1000 pages runs the checkpoint itself, and the writer, which
every write waits for, spent a few milliseconds in it every few hundred tasks (an fsync here costs about 5 ms).
The writer's own automatic checkpoint stays as a safety net at WAL_AUTOCHECKPOINT pages (about 40 MB), for when
the background ones cannot finish.

Group commit: writes queued while the writer is busy run together in its next transaction (at most GROUP_LIMIT),
each in a SAVEPOINT of its own, so one that raises is rolled back alone and its caller gets the exception while
the others commit. They run one after another in the order they were submitted, each seeing what those before
it wrote, exactly as separate transactions would; each caller hears back only after the COMMIT. A group pays one
BEGIN, one COMMIT (each page it changed is written to the WAL once, not once per write) and, in the thread, one
wake-up of the loop, instead of one of each per write; alone, a write runs in a transaction of its own, without a
savepoint. On the loop a transaction takes no time in which others could queue, so the writer waits instead: a
write that comes within `group_commit_window` seconds (BATON_SQLITE_GROUP_COMMIT_MS) of the end of the last
transaction waits for the rest of that window, and the writes that came meanwhile share its transaction. A write
that comes later, as every write does under light load, runs at the end of the loop turn it came in, with no wait.
A batcher of its own callers (the task engine's creates) waits for the writer's `turn` and takes its batch then, so
the callers that came during the window join it too.
When an error ends the whole transaction (SQLite rolls back by itself on a full disk or an I/O error) or the
COMMIT fails, nothing of the group was written: every write that ran in it fails with that error, and those not
yet begun go first into the next transaction.

The one writer is what an embedded deployment runs out of first, so its load is measured (WRITER_* metrics):
transactions and the writes in them, the seconds it was busy in them and, of those, the seconds it was on the CPU
(in the thread, the rest it waited, mostly for the GIL the event loop held), and how long each write queued before
its transaction began. Busy seconds growing by nearly one a second mean the writer is saturated.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from prometheus_client import Counter, Histogram
from sqlalchemy.engine import Connection, Engine, RootTransaction

from baton.observability.logging import get_logger
from baton.store.engine import BEGIN_IMMEDIATE

T = TypeVar("T")
log = get_logger(__name__)
#: Reader threads (and connections): SQLite releases the GIL while it works, so a few overlap usefully.
READERS = 3
#: Seconds between background checkpoints at most (while there are writes), and the writer's own fallback.
CHECKPOINT_INTERVAL = 0.25
WAL_AUTOCHECKPOINT = 10_000
#: Writes one transaction takes from the queue at most (group commit).
GROUP_LIMIT = 32
#: Seconds a write on the loop waits, after the last transaction ended, for others to share its transaction.
GROUP_COMMIT_WINDOW = 0.005
_SAVEPOINT = "baton_write"

WRITER_TRANSACTIONS = Counter("baton_sqlite_write_transactions", "Write transactions run by the SQLite writer thread.")
WRITER_WRITES = Counter(
    "baton_sqlite_writes",
    "Writes (run_in_transaction calls) run by the SQLite writer thread; several share a transaction under load.",
)
WRITER_BUSY = Counter(
    "baton_sqlite_writer_busy_seconds", "Seconds the SQLite writer thread spent in write transactions (wall clock)."
)
WRITER_CPU = Counter(
    "baton_sqlite_writer_cpu_seconds",
    "CPU seconds the SQLite writer thread used in write transactions (busy seconds less waits for the GIL and I/O).",
)
WRITER_QUEUED = Histogram(
    "baton_sqlite_write_queue_seconds",
    "Seconds a write waited for the SQLite writer thread before its transaction began.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


class _Write(Generic[T]):
    """One queued write: its function, the caller's future, and (once run) its result or exception."""

    __slots__ = ("began", "failed", "fn", "future", "loop", "outcome", "submitted")

    def __init__(self, fn: Callable[[Connection], T], loop: asyncio.AbstractEventLoop) -> None:
        self.fn = fn
        self.loop = loop
        self.future: asyncio.Future[T] = loop.create_future()
        self.submitted = time.perf_counter()
        self.outcome: Any = None
        self.began = False
        self.failed = False


class _TransactionLost(Exception):
    """An error ended the whole transaction of a group: nothing of it can be committed."""


class _Locked(Exception):
    """On the loop, BEGIN IMMEDIATE found the database locked by another connection: nothing of the group ran."""


def _is_locked(error: BaseException) -> bool:
    """Whether `error` (the driver's, or SQLAlchemy's around it) is SQLite's SQLITE_BUSY."""
    cause = getattr(error, "orig", error)
    return isinstance(cause, sqlite3.OperationalError) and cause.sqlite_errorcode == sqlite3.SQLITE_BUSY


class SqliteThreads:
    """Runs write transactions on one connection, on the event loop (or in one thread), and reads in a few
    threads."""

    def __init__(
        self,
        writer: Engine,
        reader: Engine,
        *,
        on_loop: bool = True,
        group_commit_window: float = GROUP_COMMIT_WINDOW,
        busy_timeout_ms: int = 5000,
    ) -> None:
        self.writer = writer
        self.reader = reader
        self.on_loop = on_loop
        self.group_commit_window = group_commit_window
        self._busy_timeout_ms = busy_timeout_ms
        self._loop_drain: asyncio.Handle | None = None  # the drain scheduled on the loop
        self._turn_waiters: list[asyncio.Future[None]] = []  # callers of `turn` waiting for the next group
        self._last_end = 0.0  # perf_counter when the last transaction on the loop ended
        self._write_thread: ThreadPoolExecutor | None = None
        self._read_threads: ThreadPoolExecutor | None = None
        self._write_connection: Connection | None = None  # used by one drain at a time (on the loop or in the thread)
        #: Writes begun so far, counted as each begins (on the loop or in the thread): they run one at a time in this
        #: order, so a write sees what every one with a lower number wrote.
        self.writes_begun = 0
        self._queue: deque[_Write[Any]] = deque()
        self._queue_lock = threading.Lock()
        self._draining = False  # a drain is scheduled on the loop or submitted to the thread, or running
        self.checkpoints = 0  # background checkpoints run
        self._checkpoint_thread: ThreadPoolExecutor | None = None
        self._checkpoint_connection: sqlite3.Connection | None = None  # used in the checkpoint thread only
        self._checkpoint_due = 0.0  # monotonic time before which no checkpoint is started
        self._checkpointing = False
        self._checkpoint_failed = False  # logged once

    async def write(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in a write transaction; its writes are committed when it returns, rolled back when it raises.

        Under load the transaction is shared with other writes (group commit, above). A write cancelled before
        it began is not run; once begun, it runs to its end even when the caller is cancelled (as a transaction
        that committed just before a cancellation would have).
        """
        write = _Write(fn, asyncio.get_running_loop())
        with self._queue_lock:
            self._queue.append(write)
            if not self._draining:
                self._draining = True
                if self.on_loop:
                    self._schedule(write.loop)
                else:
                    self._to_thread()
        result: T = await write.future
        return result

    async def turn(self) -> None:
        """Wait until the next transaction on the loop is about to take its group from the queue (scheduling it
        as a write would, when none is scheduled): a write submitted right then is in that group. A batcher that
        gathers its own callers (the task engine's creates) takes its batch here, so the callers that came during
        the group-commit window share this transaction rather than waiting for the one after it. At once when
        writes go to the writer thread."""
        if not self.on_loop:
            return
        loop = asyncio.get_running_loop()
        with self._queue_lock:
            if self._draining and self._loop_drain is None:  # the queue is the writer thread's (the lock fallback)
                return
            waiter: asyncio.Future[None] = loop.create_future()
            self._turn_waiters.append(waiter)
            if not self._draining:
                self._draining = True
                self._schedule(loop)
        await waiter

    def _schedule(self, loop: asyncio.AbstractEventLoop, backlog: bool = False) -> None:
        """Drain on the loop at the end of this turn, or when the group-commit window since the last transaction
        ends (right away for a `backlog` of writes that queued up meanwhile)."""
        wait = 0.0 if backlog else self._last_end + self.group_commit_window - time.perf_counter()
        self._loop_drain = (
            loop.call_soon(self._drain_on_loop) if wait <= 0 else loop.call_later(wait, self._drain_on_loop)
        )

    def _to_thread(self) -> None:
        """Hand the queue to the writer thread (under the queue lock)."""
        if self._write_thread is None:  # first use, or used again after close()
            self._write_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="baton-sqlite-writer")
        self._write_thread.submit(self._drain)

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in one read transaction (a consistent snapshot), rolled back at the end."""
        if self._read_threads is None:
            self._read_threads = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="baton-sqlite-reader")
        return await asyncio.get_running_loop().run_in_executor(self._read_threads, self._read, fn)

    def _drain_on_loop(self) -> None:
        """On the loop: run one group of the queued writes; schedule the next group, if more are queued, for the
        next turn (other callbacks run between transactions). A group that finds the database locked goes, with
        the writes behind it, to the writer thread, which waits for the lock."""
        self._loop_drain = None
        loop = asyncio.get_running_loop()
        if self._turn_waiters:  # they submit their writes first (their wake-ups run before this next call)
            waiters, self._turn_waiters = self._turn_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._loop_drain = loop.call_soon(self._drain_on_loop)
            return
        with self._queue_lock:
            group = [self._queue.popleft() for _ in range(min(GROUP_LIMIT, len(self._queue)))]
        group = [write for write in group if not write.future.cancelled()]
        locked = bool(group) and not self._run(group, on_loop=True)
        if group:
            self._last_end = time.perf_counter()
        with self._queue_lock:
            if locked:
                self._queue.extendleft(reversed(group))
                self._to_thread()
            elif self._queue:
                self._schedule(loop, backlog=True)
            else:
                self._draining = False

    def _drain(self) -> None:
        """In the writer thread: run the queued writes, a group per transaction, until the queue is empty."""
        while True:
            with self._queue_lock:
                if not self._queue:
                    self._draining = False
                    return
                group = [self._queue.popleft() for _ in range(min(GROUP_LIMIT, len(self._queue)))]
            group = [write for write in group if not write.future.cancelled()]
            if group:
                self._run(group)

    def _run(self, group: list[_Write[Any]], on_loop: bool = False) -> bool:
        """Run `group` in one transaction and hand the callers their outcomes. False, with nothing run, when on
        the loop the database is locked by another connection."""
        started, cpu_started = time.perf_counter(), time.thread_time()
        try:
            self._transaction(group, on_loop)
        except _Locked:
            return False
        except BaseException as exc:  # noqa: BLE001 - the transaction failed: no write of the group was committed
            error = exc.__cause__ if isinstance(exc, _TransactionLost) and exc.__cause__ is not None else exc
            for write in group:
                if write.began and not write.failed:
                    write.outcome, write.failed = error, True
            waiting = [write for write in group if not write.began]
            if waiting and len(waiting) < len(group):  # not run behind the failure: first in the next transaction
                with self._queue_lock:
                    self._queue.extendleft(reversed(waiting))
                group = [write for write in group if write.began]
            else:  # the transaction did not begin (or nothing in it ran): every write gets the error
                for write in waiting:
                    write.outcome, write.failed = error, True
        else:
            self._maybe_checkpoint()  # after the COMMIT: whatever happens there, the group was written
        for write in group:
            WRITER_QUEUED.observe(started - write.submitted)
        WRITER_TRANSACTIONS.inc()
        WRITER_WRITES.inc(len(group))
        WRITER_BUSY.inc(time.perf_counter() - started)
        WRITER_CPU.inc(time.thread_time() - cpu_started)
        loops: dict[asyncio.AbstractEventLoop, list[_Write[Any]]] = {}
        for write in group:
            loops.setdefault(write.loop, []).append(write)
        for loop, writes in loops.items():
            if on_loop and loop is asyncio.get_running_loop():
                _settle(writes)
                continue
            with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody is waiting
                loop.call_soon_threadsafe(_settle, writes)
        return True

    def _transaction(self, group: list[_Write[Any]], on_loop: bool) -> None:
        connection = self._connection()
        with self._begin(connection, on_loop):
            if len(group) == 1:  # alone: the transaction is the write's
                write = group[0]
                self.writes_begun += 1
                write.began = True
                try:
                    write.outcome = write.fn(connection)
                except BaseException as exc:
                    write.outcome, write.failed = exc, True
                    raise
            else:
                driver = connection.connection.driver_connection
                assert isinstance(driver, sqlite3.Connection)
                for write in group:
                    self._savepoint(write, connection, driver)

    def _begin(self, connection: Connection, on_loop: bool) -> RootTransaction:
        """BEGIN IMMEDIATE. In the thread of a writer that runs on the loop, wait for the lock as long as the busy
        timeout allows (on the loop the connection never waits: `_Locked`)."""
        if on_loop:
            try:
                return connection.begin()
            except Exception as exc:
                if _is_locked(exc):
                    raise _Locked from exc
                raise
        if not self.on_loop:
            return connection.begin()
        driver = connection.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        driver.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        try:
            return connection.begin()
        finally:
            driver.execute("PRAGMA busy_timeout = 0")

    def _savepoint(self, write: _Write[Any], connection: Connection, driver: sqlite3.Connection) -> None:
        """Run one write of a group in a savepoint of the group's transaction, rolled back to when it raises.

        The savepoint is not released: the next write's nests in it, and the COMMIT releases them all. `ROLLBACK TO`
        goes back to the newest savepoint of the name, the raising write's own, and keeps it, so the writes before
        it stay and those after it nest there instead. That is one statement less a write (each one a GIL hand-off
        for the writer thread, which waits to take the GIL back from the event loop after every SQLite call)."""
        driver.execute(f"SAVEPOINT {_SAVEPOINT}")
        self.writes_begun += 1
        write.began = True
        try:
            write.outcome = write.fn(connection)
        except Exception as exc:  # the write's own failure, for its caller only
            write.outcome, write.failed = exc, True
            if connection.invalidated or not driver.in_transaction:
                raise _TransactionLost from exc
            driver.execute(f"ROLLBACK TO {_SAVEPOINT}")

    def _connection(self) -> Connection:
        connection = self._write_connection
        if connection is None or connection.closed or connection.invalidated:
            if connection is not None:
                connection.close()
            connection = self.writer.connect().execution_options(**{BEGIN_IMMEDIATE: True})
            cursor = connection.connection.cursor()  # the driver's: a statement here would begin a transaction
            try:
                cursor.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
                if self.on_loop:  # the loop never waits for the lock (`_begin`)
                    cursor.execute("PRAGMA busy_timeout = 0")
            finally:
                cursor.close()
            self._write_connection = connection
        return connection

    def _maybe_checkpoint(self) -> None:
        now = time.monotonic()
        if now >= self._checkpoint_due and not self._checkpointing:
            self._checkpoint_due = now + CHECKPOINT_INTERVAL
            self._checkpointing = True
            if self._checkpoint_thread is None:
                self._checkpoint_thread = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="baton-sqlite-checkpoint"
                )
            try:
                self._checkpoint_thread.submit(self._checkpoint)
            except RuntimeError:  # its thread was shut down (closing): the writer's own checkpoint remains
                self._checkpointing = False

    def _checkpoint(self) -> None:
        try:
            if self._checkpoint_connection is None:
                database = self.writer.url.database
                assert database is not None
                self._checkpoint_connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
            self._checkpoint_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1
        except sqlite3.Error as exc:  # the writer's own checkpoint still runs at WAL_AUTOCHECKPOINT pages
            if not self._checkpoint_failed:
                self._checkpoint_failed = True
                log.warning("sqlite.checkpoint_failed", error=repr(exc))
        finally:
            self._checkpointing = False

    def _close_checkpoints(self) -> None:
        if self._checkpoint_connection is not None:
            self._checkpoint_connection.close()
            self._checkpoint_connection = None

    def _close_writer(self) -> None:
        if self._write_connection is not None:
            self._write_connection.close()
            self._write_connection = None
        self.writer.dispose()

    def _read(self, fn: Callable[[Connection], T]) -> T:
        with self.reader.connect() as connection, connection.begin():
            return fn(connection)

    async def close(self) -> None:
        """Wait for queued transactions, then close the connections and stop the threads."""
        loop = asyncio.get_running_loop()
        while self._loop_drain is not None:  # writes waiting for their group-commit window: run them now
            self._loop_drain.cancel()
            self._drain_on_loop()
            await asyncio.sleep(0)  # callers woken for the writer's turn submit their writes before it closes
        if self._write_thread is None:  # no write went to the thread
            self._close_writer()
        stops = (
            ("_write_thread", self._close_writer),
            ("_checkpoint_thread", self._close_checkpoints),
            ("_read_threads", self.reader.dispose),
        )
        for attribute, stop in stops:
            threads: ThreadPoolExecutor | None = getattr(self, attribute)
            setattr(self, attribute, None)
            if threads is not None:
                await loop.run_in_executor(threads, stop)
                threads.shutdown(wait=False)


def _settle(writes: list[_Write[Any]]) -> None:
    """On the callers' loop: hand each write's result or exception to its caller (unless it gave up waiting)."""
    for write in writes:
        if write.future.cancelled():
            continue
        if write.failed:
            error = write.outcome
            if isinstance(error, StopIteration):  # a future refuses it (it would end a generator)
                error = RuntimeError(f"write raised {error!r}")
            write.future.set_exception(error)
        else:
            write.future.set_result(write.outcome)
