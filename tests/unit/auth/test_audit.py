"""The audit log: non-blocking record(), batched writes, filters and pages."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from baton.auth import AUDIT_DROPPED, AuditLog, AuditRecord, parse_filter
from baton.errors import InvalidArgument
from baton.store import SqlStore

Counter = Callable[[], AbstractContextManager[list[tuple[str, Any]]]]


def dropped(reason: str) -> float:
    return AUDIT_DROPPED.labels(reason)._value.get()


def bad_filter(text: str) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        parse_filter(text)
    [violation] = caught.value.field_violations
    assert violation.field == "filter"
    return caught.value


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        'action = "login.failed"',
        'action="login.failed" AND outcome = "failed"',
        'principal_id = "p1" AND namespace = "billing" AND create_time >= "2026-01-01T00:00:00Z"',
        'create_time > "2026-01-01T00:00:00+02:00" AND create_time <= "2026-02-01T00:00:00.5Z"',
        'create_time < "2026-01-01T00:00:00Z"',
        r'action = "with \"quotes\" AND more"',
    ],
)
def test_valid_filters(text: str) -> None:
    parse_filter(text)


@pytest.mark.parametrize(
    ("text", "term", "problem"),
    [
        ('actor = "x"', 'actor = "x"', "unknown field"),
        ('action != "x"', 'action != "x"', "supports only ="),
        ('action > "x"', 'action > "x"', "supports only ="),
        ('create_time = "2026-01-01T00:00:00Z"', "create_time", "supports >="),
        ('create_time >= "yesterday"', "yesterday", "RFC 3339"),
        ('create_time >= "2026-01-01T00:00:00"', "2026-01-01T00:00:00", "RFC 3339"),
        ("action = login", "action = login", "expected"),
        ('action = "a" OR outcome = "ok"', 'OR outcome = "ok"', "joined by AND"),
        ('action = "a" and outcome = "ok"', 'and outcome = "ok"', "joined by AND"),
        ('action = "a" AND', "(nothing)", "expected"),
        ('NOT action = "a"', "NOT", "expected"),
        ('action = "unterminated', "action", "expected"),
    ],
)
def test_unsupported_filters_name_the_bad_term(text: str, term: str, problem: str) -> None:
    error = bad_filter(text)
    assert term in error.field_violations[0].description
    assert problem in error.field_violations[0].description
    assert term in error.message


async def test_record_is_written_and_listed(store: SqlStore) -> None:
    log = AuditLog(store)
    await log.start()
    log.record(
        AuditRecord(
            action="login.failed",
            outcome="failed",
            principal_id="p1",
            method="/baton.v1.AuthService/Login",
            peer="ipv4:127.0.0.1:5000",
            request_id="r1",
            namespace="billing",
            details={"reason": "bad_password"},
        )
    )
    await log.flush()
    [event], token = await log.list_events(0, "", "")
    assert token == ""
    assert (event.action, event.outcome, event.principal_id, event.namespace) == (
        "login.failed",
        "failed",
        "p1",
        "billing",
    )
    assert (event.method, event.peer, event.request_id) == ("/baton.v1.AuthService/Login", "ipv4:127.0.0.1:5000", "r1")
    assert event.details == {"reason": "bad_password"}
    assert event.create_time.tzinfo is not None
    await log.close()


async def test_record_never_blocks_and_drops_when_full(store: SqlStore) -> None:
    log = AuditLog(store, max_queue=3)  # not started: nothing drains the queue
    before = dropped("queue_full")
    for _ in range(5):
        log.record(AuditRecord(action="x", outcome="ok"))
    assert dropped("queue_full") - before == 2
    await log.close()  # writes the three queued events
    events, _ = await log.list_events(10, "", "")
    assert len(events) == 3


async def test_record_never_raises(store: SqlStore) -> None:
    log = AuditLog(store)
    before = dropped("invalid")
    log.record("not a record")  # type: ignore[arg-type]
    assert dropped("invalid") - before == 1
    log.record(AuditRecord(action="x" * 500, outcome="weird", method="m" * 1000, details={"n": 1}))  # type: ignore[dict-item]
    await log.close()
    [event], _ = await log.list_events(10, "", "")
    assert (len(event.action), len(event.method), event.outcome) == (64, 256, "failed")
    assert event.details == {"n": "1", "outcome": "weird"}
    closed_before = dropped("closed")
    log.record(AuditRecord(action="late", outcome="ok"))
    assert dropped("closed") - closed_before == 1


async def test_writes_are_batched(store: SqlStore, count_statements: Counter) -> None:
    log = AuditLog(store, batch_size=500, flush_interval=0.05)
    await log.start()
    with count_statements() as statements:
        for index in range(1200):
            log.record(AuditRecord(action=f"a{index}", outcome="ok"))
        await log.flush()
    inserts = [params for sql, params in statements if sql.lstrip().upper().startswith("INSERT INTO AUDIT_EVENTS")]
    assert [len(batch) for batch in inserts] == [500, 500, 200]
    await log.close()


async def test_background_writer_flushes_without_being_asked(store: SqlStore) -> None:
    log = AuditLog(store, flush_interval=0.01)
    await log.start()
    log.record(AuditRecord(action="x", outcome="ok"))
    for _ in range(200):
        events, _ = await log.list_events(10, "", "")
        if events:
            break
        await asyncio.sleep(0.01)
    assert len(events) == 1
    await log.close()


async def test_filters_and_pages(store: SqlStore) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    times = iter(start + timedelta(minutes=i) for i in range(100))
    log = AuditLog(store, clock=lambda: next(times))
    for index in range(30):
        action = "login.failed" if index % 3 == 0 else "login.succeeded"
        log.record(
            AuditRecord(action=action, outcome="failed" if index % 3 == 0 else "ok", principal_id=f"p{index % 2}")
        )
    await log.flush()

    seen: list[str] = []
    token = ""
    while True:
        page, token = await log.list_events(4, token, 'action = "login.failed"')
        seen += [event.action for event in page]
        assert len(page) <= 4
        if not token:
            break
    assert seen == ["login.failed"] * 10

    everything, _ = await log.list_events(100, "", "")
    assert [e.create_time for e in everything] == sorted((e.create_time for e in everything), reverse=True)

    window = 'create_time >= "2026-01-01T00:10:00Z" AND create_time < "2026-01-01T00:20:00Z" AND principal_id = "p0"'
    page, _ = await log.list_events(100, "", window)
    assert [e.create_time.minute for e in page] == [18, 16, 14, 12, 10]

    _, token = await log.list_events(2, "", 'outcome = "ok"')
    with pytest.raises(InvalidArgument) as caught:
        await log.list_events(2, token, 'outcome = "failed"')
    assert caught.value.field_violations[0].field == "page_token"
    with pytest.raises(InvalidArgument):
        await log.list_events(2, "garbage!", "")
    await log.close()


async def test_equal_times_page_by_id(store: SqlStore) -> None:
    same = datetime(2026, 1, 1, tzinfo=UTC)
    log = AuditLog(store, clock=lambda: same)
    for index in range(7):
        log.record(AuditRecord(action=f"a{index}", outcome="ok"))
    await log.flush()
    seen, token = [], ""
    while True:
        page, token = await log.list_events(3, token, "")
        seen += [e.action for e in page]
        if not token:
            break
    assert seen == [f"a{index}" for index in reversed(range(7))]
    await log.close()
