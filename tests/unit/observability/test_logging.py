"""Logging configuration: JSON and console output, call context, no frame locals in tracebacks."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from baton.observability.context import CURRENT_CALL
from baton.observability.logging import (
    AccessLog,
    configure_logging,
    flush_logs,
    get_logger,
    iso_utc,
    json_dumps,
)


def _fail_with_secret() -> None:
    api_key = "bk_secretsecret_thisMustNeverBeLogged0123456789"  # noqa: F841 - a local the traceback could show
    raise RuntimeError("boom")


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_tracebacks_do_not_show_local_variables(fmt: str) -> None:
    stream = io.StringIO()
    configure_logging(fmt, "info", stream=stream)
    try:
        _fail_with_secret()
    except RuntimeError:
        get_logger("test").exception("failed")
    text = stream.getvalue()
    assert "boom" in text
    assert "thisMustNeverBeLogged" not in text


def test_json_lines_carry_the_call_context() -> None:
    class FakeCall:
        request_id = "req-1"
        principal = None

    stream = io.StringIO()
    configure_logging("json", "info", stream=stream)
    token = CURRENT_CALL.set(FakeCall())
    try:
        get_logger("test").info("hello", answer=42)
        logging.getLogger("stdlib").warning("from the standard library")
    finally:
        CURRENT_CALL.reset(token)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["event"] == "hello"
    assert lines[0]["answer"] == 42
    assert lines[0]["request_id"] == "req-1"
    assert lines[1]["event"] == "from the standard library"
    assert lines[1]["request_id"] == "req-1"
    assert lines[1]["level"] == "warning"


def test_iso_utc_writes_what_structlog_s_timestamper_writes() -> None:
    for seconds in (0.0, 1_700_000_000.5, 1_764_744_000.123456, 1_764_744_059.999999):
        expected = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert iso_utc(seconds) == expected


async def test_access_lines_are_rendered_when_their_batch_is_written() -> None:
    stream = io.StringIO()
    configure_logging("json", "info", stream=stream)
    access = AccessLog("baton.access")
    access.write(logging.INFO, "rpc", {"method": "/a/B", "code": "OK"})
    access.write(logging.DEBUG, "rpc", {"method": "/a/Dropped"})  # below the configured level
    access.write(logging.WARNING, "rpc", {"method": "/a/C", "code": "PERMISSION_DENIED"})
    assert stream.getvalue() == ""  # queued, not yet rendered or written
    flush_logs()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["method"], line["level"], line["logger"], line["event"]) for line in lines] == [
        ("/a/B", "info", "baton.access", "rpc"),
        ("/a/C", "warning", "baton.access", "rpc"),
    ]
    stamped = datetime.strptime(lines[0]["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - stamped).total_seconds()) < 60
    assert list(lines[0]) == ["method", "code", "event", "level", "logger", "timestamp"]


async def test_access_log_writes_after_its_interval() -> None:
    stream = io.StringIO()
    configure_logging("console", "info", stream=stream)
    access = AccessLog("baton.access")
    access.write(logging.INFO, "rpc", {"method": "/a/B", "code": "OK"})
    await asyncio.sleep(0.3)  # the batch interval is 0.1 s
    assert "/a/B" in stream.getvalue()
    assert "rpc" in stream.getvalue()


def test_json_lines_are_compact_and_fall_back_for_what_orjson_refuses() -> None:
    stream = io.StringIO()
    configure_logging("json", "info", stream=stream)
    log = get_logger("test")
    log.info("dated", when=datetime(2026, 12, 3, tzinfo=UTC), keyed={1: "one"}, text="é\n")
    log.info("sized", big=2**70)
    dated, sized = stream.getvalue().strip().splitlines()[-2:]
    assert '"event":"dated"' in dated
    record = json.loads(dated)
    assert record["when"] == "2026-12-03T00:00:00+00:00"
    assert record["keyed"] == {"1": "one"}
    assert record["text"] == "é\n"
    assert json.loads(sized)["big"] == 2**70  # beyond 64 bits: orjson refuses it, the standard library writes it


def test_json_dumps_matches_the_standard_library() -> None:
    from baton.observability.logging import json_dumps

    event = {"a": 1, "b": [1.5, None, True], "c": {"d": "x\u2028y"}}
    assert json.loads(json_dumps(event)) == event
    assert json_dumps({"n": 2**64}) == '{"n":18446744073709551616}'


@pytest.mark.parametrize(
    "line",
    [
        (
            logging.INFO,
            1_764_744_000.123456,
            "/baton.v1.AuthService/WhoAmI",
            "OK",
            1.234,
            "ipv4:127.0.0.1:5555",
            "usr_01",
            "api_key",
            "0193a0b0-1234-7abc-8def-0123456789ab",
            None,
            None,
            None,
        ),
        (
            logging.WARNING,
            1_764_744_059.999999,
            "/baton.v1.TaskService/GetTask",
            "PERMISSION_DENIED",
            0.001,
            'unix:/tmp/a "b"\\c',
            None,
            None,
            "req-1",
            "0" * 31 + "1",
            "0" * 15 + "2",
            'no "tasks.read"\nin é',
        ),
        (logging.ERROR, 0.0, "/a/B", "INTERNAL", 12345.678, "", "usr_\u2028", "jwt", "r", None, None, "boom"),
    ],
)
def test_rpc_lines_read_as_structlog_would_write_the_same_event(line: tuple[Any, ...]) -> None:
    stream = io.StringIO()
    configure_logging("json", "info", stream=stream)
    access = AccessLog("baton.access")
    access.rpc(line)  # type: ignore[arg-type]
    flush_logs()
    written = stream.getvalue()
    expected = access._fields(line)  # type: ignore[arg-type]
    expected["timestamp"] = iso_utc(expected["timestamp"])
    assert written == json_dumps(expected) + "\n"  # byte for byte: field order, escaping, numbers
    assert json.loads(written)["duration_ms"] == line[4]


def test_rpc_lines_on_the_console_carry_every_field() -> None:
    stream = io.StringIO()
    configure_logging("console", "info", stream=stream)
    access = AccessLog("baton.access")
    access.rpc((logging.WARNING, time.time(), "/a/B", "NOT_FOUND", 2.5, "ipv4:1.2.3.4:5", "usr_9", "jwt", "req-9",
                None, None, "task t-1 not found"))  # fmt: skip
    flush_logs()
    text = stream.getvalue()
    for part in ("/a/B", "NOT_FOUND", "duration_ms=2.5", "ipv4:1.2.3.4:5", "usr_9", "req-9", "task t-1 not found"):
        assert part in text
    assert "warn" in text


def test_rpc_lines_sharing_cached_pieces_stay_exact() -> None:
    # Lines reuse the text made for a method and code, and for a peer, principal and auth method: mixing them
    # through one log must still give each line its own fields.
    stream = io.StringIO()
    configure_logging("json", "info", stream=stream)
    access = AccessLog("baton.access")
    lines: list[Any] = []
    for n in range(12):
        lines.append(
            (logging.INFO if n % 3 else logging.WARNING, 1_764_744_000.25 + n * 0.7, f"/a/M{n % 2}",
             "OK" if n % 3 else "NOT_FOUND", n / 8, f"ipv4:127.0.0.1:{5000 + n % 4}", f"usr_{n % 3}" if n % 5 else None,
             "jwt" if n % 2 else "api_key", f"req-{n}", None, None, None if n % 3 else f'missing "{n}"')
        )  # fmt: skip
    for line in lines:
        access.rpc(line)
    flush_logs()
    written = stream.getvalue().splitlines()
    expected = []
    for line in lines:
        fields = access._fields(line)
        fields["timestamp"] = iso_utc(fields["timestamp"])
        expected.append(json_dumps(fields))
    assert written == expected
