"""The audit log: security events queued without blocking, written in batches, listed newest first.

`record()` only puts a row on a bounded queue; when the queue is full the event is dropped and counted in
`baton_audit_dropped_total` rather than slowing the call that caused it. A background task writes up to
`batch_size` rows per transaction, at least every `flush_interval` seconds. `list_events()` takes an AIP-160
subset filter: terms joined by AND, `action`, `outcome`, `principal_id` and `namespace` with `=`, and
`create_time` with `>=`, `>`, `<=`, `<` against an RFC 3339 time in double quotes.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import Counter
from sqlalchemy import and_, insert, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from baton.auth.interfaces import AuditRecord
from baton.auth.repository import run_read
from baton.errors import FieldViolation, InvalidArgument
from baton.pagination import decode_token, encode_token
from baton.pagination import page_size as effective_page_size
from baton.store import SqlStore, new_id
from baton.store.tables import AUDIT_OUTCOMES, audit_events

log = structlog.get_logger(__name__)

AUDIT_DROPPED = Counter("baton_audit_dropped", "Audit events dropped instead of written.", ("reason",))

_COLUMN_LIMITS = {"action": 64, "method": 256, "peer": 256, "request_id": 128, "namespace": 63}
_EQUALITY_FIELDS = ("action", "outcome", "principal_id", "namespace")
_TIME_OPERATORS: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}
_TERM = re.compile(r'\s*(?P<field>[A-Za-z_][\w.]*)\s*(?P<op>>=|<=|!=|=|<|>|:)\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*')
_AND = re.compile(r"AND(?:\s+|$)")
_ESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True, slots=True)
class AuditEventRecord:
    """One stored audit event."""

    id: str
    create_time: datetime
    action: str
    outcome: str
    principal_id: str
    method: str
    peer: str
    request_id: str
    namespace: str
    details: dict[str, str]


def _bad_filter(term: str, problem: str) -> InvalidArgument:
    shown = term if term else "(nothing)"
    return InvalidArgument(
        f"filter term {shown!r} is not supported: {problem}",
        field_violations=[FieldViolation("filter", f"{shown!r}: {problem}")],
    )


def _term_at(text: str, position: int) -> str:
    rest = text[position:].strip()
    return re.split(r"\s+AND\s+", rest, maxsplit=1)[0]


def parse_filter(text: str) -> list[ColumnElement[bool]]:
    """SQL conditions for an AIP-160 subset filter; InvalidArgument naming the first bad term."""
    conditions: list[ColumnElement[bool]] = []
    position = 0
    if not text.strip():
        return conditions
    while True:
        match = _TERM.match(text, position)
        if match is None:
            raise _bad_filter(_term_at(text, position), 'expected `field = "value"` terms joined by AND')
        field, op, value = match["field"], match["op"], _ESCAPE.sub(r"\1", match["value"])
        term = match[0].strip()
        if field in _EQUALITY_FIELDS:
            if op != "=":
                raise _bad_filter(term, f"{field} supports only =")
            conditions.append(audit_events.c[field] == value)
        elif field == "create_time":
            if op not in _TIME_OPERATORS:
                raise _bad_filter(term, "create_time supports >=, >, <= and <")
            conditions.append(_TIME_OPERATORS[op](audit_events.c.create_time, _parse_time(term, value)))
        else:
            raise _bad_filter(term, f"unknown field; use {', '.join(_EQUALITY_FIELDS)} or create_time")
        position = match.end()
        if position >= len(text):
            return conditions
        joiner = _AND.match(text, position)
        if joiner is None:
            raise _bad_filter(_term_at(text, position), "terms must be joined by AND")
        position = joiner.end()


def _parse_time(term: str, value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise _bad_filter(term, "not an RFC 3339 time with an offset, such as 2026-01-01T00:00:00Z")
    return when.astimezone(UTC)


def _row(event: AuditRecord, now: datetime) -> dict[str, Any]:
    details = {str(key): str(value) for key, value in event.details.items()}
    outcome = event.outcome
    if outcome not in AUDIT_OUTCOMES:
        details["outcome"] = outcome[:64]
        outcome = "failed"
    row: dict[str, Any] = {
        "id": new_id(),
        "create_time": now,
        "outcome": outcome,
        "principal_id": event.principal_id or None,
        "details": details,
    }
    for column, limit in _COLUMN_LIMITS.items():
        value = getattr(event, column)
        row[column] = value[:limit] if value else None
    row["action"] = row["action"] or "unknown"
    return row


class AuditLog:
    """The AuditSink over the store, with a background batch writer; start() before use, close() at the end."""

    def __init__(
        self,
        store: SqlStore,
        *,
        max_queue: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        close_timeout: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._close_timeout = close_timeout
        self._clock = clock
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(max_queue)
        self._flush_requested = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    def record(self, event: AuditRecord) -> None:
        """Queue an event; never blocks and never raises (a full queue drops and counts it)."""
        try:
            if self._closed:
                AUDIT_DROPPED.labels("closed").inc()
                return
            self._queue.put_nowait(_row(event, self._clock()))
        except asyncio.QueueFull:
            AUDIT_DROPPED.labels("queue_full").inc()
        except Exception:  # never let auditing break the call being audited
            AUDIT_DROPPED.labels("invalid").inc()
            log.exception("audit_record_failed", action=getattr(event, "action", "?"))

    async def start(self) -> None:
        """Start the background writer."""
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_forever(), name="baton-audit-writer")

    async def flush(self) -> None:
        """Write everything queued so far (and wait for a batch being written)."""
        if self._writer is None or self._writer.done():
            while not self._queue.empty():
                await self._write(self._take_batch([]))
            return
        self._flush_requested.set()
        await self._queue.join()

    async def close(self) -> None:
        """Refuse new events, write the queued ones (for at most `close_timeout` seconds), stop the writer."""
        self._closed = True
        try:
            await asyncio.wait_for(self.flush(), self._close_timeout)
        except TimeoutError:
            AUDIT_DROPPED.labels("closed").inc(self._queue.qsize())
            log.error("audit_close_timed_out", pending=self._queue.qsize())
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None

    def _take_batch(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        while len(batch) < self._batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return batch

    async def _write_forever(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self._queue.qsize() < self._batch_size - 1 and not self._flush_requested.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flush_requested.wait(), self._flush_interval)
            await self._write(self._take_batch(batch))
            if self._queue.empty():
                self._flush_requested.clear()

    async def _write(self, batch: list[dict[str, Any]]) -> None:
        try:
            await self._store.run_in_transaction(lambda connection: connection.execute(insert(audit_events), batch))
        except asyncio.CancelledError:
            raise
        except Exception:  # the writer must survive a database outage; the loss is counted
            AUDIT_DROPPED.labels("write_failed").inc(len(batch))
            log.exception("audit_write_failed", events=len(batch))
        finally:
            for _ in batch:
                self._queue.task_done()

    async def list_events(
        self, page_size: int = 0, page_token: str = "", filter: str = ""
    ) -> tuple[list[AuditEventRecord], str]:
        """One page of events matching `filter`, newest first, and the next page's token ("" at the end)."""
        limit = effective_page_size(page_size)
        conditions = parse_filter(filter)
        bound = {"filter": filter}
        position = decode_token(page_token, bound)
        if position is not None:
            after_time, after_id = _position(position)
            conditions.append(
                or_(
                    audit_events.c.create_time < after_time,
                    and_(audit_events.c.create_time == after_time, audit_events.c.id < after_id),
                )
            )
        query = (
            select(audit_events)
            .where(*conditions)
            .order_by(audit_events.c.create_time.desc(), audit_events.c.id.desc())
            .limit(limit + 1)
        )

        def fetch(connection: Connection) -> list[AuditEventRecord]:
            return [
                AuditEventRecord(
                    id=row.id,
                    create_time=row.create_time,
                    action=row.action,
                    outcome=row.outcome,
                    principal_id=row.principal_id or "",
                    method=row.method or "",
                    peer=row.peer or "",
                    request_id=row.request_id or "",
                    namespace=row.namespace or "",
                    details=dict(row.details or {}),
                )
                for row in connection.execute(query)
            ]

        events = await run_read(self._store, fetch)
        if len(events) <= limit:
            return events, ""
        last = events[limit - 1]
        return events[:limit], encode_token({"t": last.create_time.isoformat(), "id": last.id}, bound)


def _position(position: dict[str, Any]) -> tuple[datetime, str]:
    try:
        when = datetime.fromisoformat(position["t"])
        event_id = position["id"]
        if when.tzinfo is None or not isinstance(event_id, str):
            raise ValueError("bad position")
    except (KeyError, TypeError, ValueError):
        raise InvalidArgument(
            "page_token is not a token this server issued",
            field_violations=[FieldViolation("page_token", "malformed page token")],
        ) from None
    return when, event_id
