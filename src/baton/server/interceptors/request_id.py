"""Request IDs: accept a sane `x-request-id`, else make one; echo it and put it in every log line."""

from __future__ import annotations

import re

import structlog

from baton.observability.logging import get_logger
from baton.server.interceptors.base import Call
from baton.store.ids import new_id

HEADER = "x-request-id"
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")

log = get_logger(__name__)


def accept_request_id(value: str | None) -> str | None:
    """The caller's request ID if it is 1-128 characters of [A-Za-z0-9._:-], else None."""
    if value is not None and _SANE.fullmatch(value):
        return value
    return None


class RequestIdConcern:
    """Sets call.request_id, binds it to the log context and echoes it in the initial metadata."""

    async def before(self, call: Call) -> None:
        """Accept or make the request ID."""
        given = call.metadata.get(HEADER)
        request_id = accept_request_id(given)
        if request_id is None:
            request_id = new_id()
            if given is not None:
                # Never log the value itself: it is caller-controlled and was rejected.
                log.info("request_id.rejected", length=len(given), request_id=request_id)
        call.request_id = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        await call.context.send_initial_metadata(((HEADER, request_id),))

    def after(self, call: Call) -> None:
        """Nothing to undo: each RPC runs in its own task context."""
