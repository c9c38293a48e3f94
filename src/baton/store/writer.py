"""SQLite in threads: every transaction of a SQLite-file store runs whole in a thread, in one hop from the loop.

aiosqlite crosses to its thread once per statement (about 100 µs each here), and several pooled connections
writing at once meet at SQLite's file lock, whose busy handler sleeps. Here one writer thread holds one
synchronous connection and runs each write transaction whole — BEGIN IMMEDIATE, its statements, COMMIT — so
writers queue in-process in arrival order; a few reader threads run read-only transactions beside it (WAL lets
readers see the last commit without waiting for the writer).

The writer thread keeps its Connection between transactions: checking one out of the pool, setting its
options and closing it again cost a tenth of the writer's time, per transaction. An idle SQLite connection
holds no lock, so keeping it open costs nothing; one that SQLAlchemy invalidated (a disconnect) is replaced on
the next transaction.

Checkpoints (copying the WAL back into the database file, with an fsync) run in a thread of their own, PASSIVE
(never waiting for a lock, never blocking the writer), at most every CHECKPOINT_INTERVAL seconds after writes.
Left to SQLite, the commit that takes the WAL past 1000 pages runs the checkpoint itself, and the writer, which
every write waits for, spent a few milliseconds in it every few hundred tasks (an fsync here costs about 5 ms).
The writer's own automatic checkpoint stays as a safety net at WAL_AUTOCHECKPOINT pages (about 40 MB), for when
the background ones cannot finish.

The one writer is what an embedded deployment runs out of first, so its load is measured (WRITER_* metrics):
transactions, the seconds it was busy in them and, of those, the seconds it was on the CPU (the rest it waited,
mostly for the GIL the event loop held), and how long each transaction queued before it began. Busy seconds
growing by nearly one a second mean the writer is saturated.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from prometheus_client import Counter, Histogram
from sqlalchemy.engine import Connection, Engine

from baton.observability.logging import get_logger
from baton.store.engine import BEGIN_IMMEDIATE

T = TypeVar("T")
log = get_logger(__name__)
#: Reader threads (and connections): SQLite releases the GIL while it works, so a few overlap usefully.
READERS = 3
#: Seconds between background checkpoints at most (while there are writes), and the writer's own fallback.
CHECKPOINT_INTERVAL = 0.25
WAL_AUTOCHECKPOINT = 10_000

WRITER_TRANSACTIONS = Counter("baton_sqlite_write_transactions", "Write transactions run by the SQLite writer thread.")
WRITER_BUSY = Counter(
    "baton_sqlite_writer_busy_seconds", "Seconds the SQLite writer thread spent in write transactions (wall clock)."
)
WRITER_CPU = Counter(
    "baton_sqlite_writer_cpu_seconds",
    "CPU seconds the SQLite writer thread used in write transactions (busy seconds less waits for the GIL and I/O).",
)
WRITER_QUEUED = Histogram(
    "baton_sqlite_write_queue_seconds",
    "Seconds a write transaction waited for the SQLite writer thread before it began.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


class SqliteThreads:
    """Runs write transactions on one connection in one thread, and reads on a few others."""

    def __init__(self, writer: Engine, reader: Engine) -> None:
        self.writer = writer
        self.reader = reader
        self._write_thread: ThreadPoolExecutor | None = None
        self._read_threads: ThreadPoolExecutor | None = None
        self._write_connection: Connection | None = None  # used in the writer thread only
        #: Write transactions begun so far, counted in the writer thread as each begins: they run one at a time
        #: in this order, so a transaction sees what every one with a lower number wrote.
        self.writes_begun = 0
        self.checkpoints = 0  # background checkpoints run
        self._checkpoint_thread: ThreadPoolExecutor | None = None
        self._checkpoint_connection: sqlite3.Connection | None = None  # used in the checkpoint thread only
        self._checkpoint_due = 0.0  # monotonic time before which no checkpoint is started
        self._checkpointing = False
        self._checkpoint_failed = False  # logged once

    async def write(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in one write transaction; commit when it returns, roll back when it raises.

        Once started, the transaction runs to its end even when the caller is cancelled (as a transaction that
        committed just before a cancellation would have).
        """
        if self._write_thread is None:  # first use, or used again after close() (as a disposed engine reconnects)
            self._write_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="baton-sqlite-writer")
        submitted = time.perf_counter()
        return await asyncio.get_running_loop().run_in_executor(self._write_thread, self._write, fn, submitted)

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in one read transaction (a consistent snapshot), rolled back at the end."""
        if self._read_threads is None:
            self._read_threads = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="baton-sqlite-reader")
        return await asyncio.get_running_loop().run_in_executor(self._read_threads, self._read, fn)

    def _write(self, fn: Callable[[Connection], T], submitted: float) -> T:
        started, cpu_started = time.perf_counter(), time.thread_time()
        WRITER_QUEUED.observe(started - submitted)
        try:
            return self._transaction(fn)
        finally:
            WRITER_TRANSACTIONS.inc()
            WRITER_BUSY.inc(time.perf_counter() - started)
            WRITER_CPU.inc(time.thread_time() - cpu_started)

    def _transaction(self, fn: Callable[[Connection], T]) -> T:
        connection = self._write_connection
        if connection is None or connection.closed or connection.invalidated:
            if connection is not None:
                connection.close()
            connection = self.writer.connect().execution_options(**{BEGIN_IMMEDIATE: True})
            cursor = connection.connection.cursor()  # the driver's: a statement here would begin a transaction
            try:
                cursor.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
            finally:
                cursor.close()
            self._write_connection = connection
        with connection.begin():
            self.writes_begun += 1
            result = fn(connection)
        now = time.monotonic()
        if now >= self._checkpoint_due and not self._checkpointing:
            self._checkpoint_due = now + CHECKPOINT_INTERVAL
            self._checkpointing = True
            if self._checkpoint_thread is None:
                self._checkpoint_thread = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="baton-sqlite-checkpoint"
                )
            self._checkpoint_thread.submit(self._checkpoint)
        return result

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
