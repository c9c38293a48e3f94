"""Request IDs: accept a sane `x-request-id`, else make one; echo it and put it in every log line."""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Awaitable
from typing import Any

from baton.observability.logging import get_logger
from baton.server.interceptors.base import Call

HEADER = "x-request-id"
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")

log = get_logger(__name__)


_random = random.Random()  # request IDs must be unique, not secret: no system call per request
if hasattr(os, "register_at_fork"):  # POSIX only; a forked child must not repeat its parent's IDs
    os.register_at_fork(after_in_child=_random.seed)
#: The millisecond last seen and the ID text it fixes ("tttttttt-tttt-7"): every call in that millisecond
#: reuses it, so a call formats only its 74 random bits.
_millisecond: list[Any] = [-1, ""]
_random_bytes = _random.randbytes
#: A random hex digit to the variant's digit: its top two bits set to 0b10 (8, 9, a or b), the other two kept.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def fresh_request_id() -> str:
    """A new UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version 7, 12 random bits, variant 0b10, 62 random bits.

    The random bits are the first 19 hex digits of 10 random bytes (one call, one `hex()`), the fourth of them
    turned into the variant digit: cheaper than formatting random integers, which this runs once a call."""
    ms = time.time_ns() // 1_000_000
    if ms != _millisecond[0]:
        stamp = f"{ms & 0xFFFF_FFFF_FFFF:012x}"
        _millisecond[0], _millisecond[1] = ms, f"{stamp[:8]}-{stamp[8:]}-7"
    digits = _random_bytes(10).hex()
    return f"{_millisecond[1]}{digits[:3]}-{_VARIANT[digits[3]]}{digits[4:7]}-{digits[7:19]}"


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
