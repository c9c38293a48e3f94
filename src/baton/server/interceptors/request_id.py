"""Request IDs: accept a sane `x-request-id`, else make one; echo it and put it in every log line."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Awaitable

from baton.observability.logging import get_logger
from baton.server.interceptors.base import Call

HEADER = "x-request-id"
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")

log = get_logger(__name__)


_random = random.Random()  # request IDs must be unique, not secret: no system call per request


def fresh_request_id() -> str:
    """A new UUIDv7 (RFC 9562): 48-bit milliseconds, version, 74 random bits, variant."""
    value = (time.time_ns() // 1_000_000) << 80 | 0x7 << 76 | _random.getrandbits(12) << 64
    value |= 0b10 << 62 | _random.getrandbits(62)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def accept_request_id(value: str | None) -> str | None:
    """The caller's request ID if it is 1-128 characters of [A-Za-z0-9._:-], else None."""
    if value is not None and _SANE.fullmatch(value):
        return value
    return None


class RequestIdConcern:
    """Sets call.request_id, binds it to the log context and echoes it in the initial metadata."""

    def before(self, call: Call) -> Awaitable[None]:
        """Accept or make the request ID."""
        given = call.metadata.get(HEADER)
        request_id = accept_request_id(given)
        if request_id is None:
            request_id = fresh_request_id()
            if given is not None:
                # Never log the value itself: it is caller-controlled and was rejected.
                log.info("request_id.rejected", length=len(given), request_id=request_id)
        call.request_id = request_id  # log lines get it through the call context (observability/context.py)
        return call.context.send_initial_metadata(((HEADER, request_id),))

    def after(self, call: Call) -> None:
        """Nothing to undo: each RPC runs in its own task context."""
