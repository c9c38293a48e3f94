"""Logging configuration: JSON and console output, call context, no frame locals in tracebacks."""

from __future__ import annotations

import io
import json
import logging

import pytest

from baton.observability.context import CURRENT_CALL
from baton.observability.logging import configure_logging, get_logger


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
