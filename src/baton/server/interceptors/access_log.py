"""One structured access line per RPC, at a level that follows the outcome.

Fields: method, code, duration_ms, peer, principal, request_id, trace_id and span_id (when a span is recording).
Credentials never reach the line: only the principal's ID and the auth method are logged, never metadata.
"""

from __future__ import annotations

import logging
import time

import grpc

from baton.observability.logging import AccessLog
from baton.server.interceptors.base import Call

_OK = grpc.StatusCode.OK
#: go-grpc-middleware's DefaultServerCodeToLevel.
_LEVELS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: logging.INFO,
    grpc.StatusCode.CANCELLED: logging.INFO,
    grpc.StatusCode.INVALID_ARGUMENT: logging.INFO,
    grpc.StatusCode.NOT_FOUND: logging.INFO,
    grpc.StatusCode.ALREADY_EXISTS: logging.INFO,
    grpc.StatusCode.UNAUTHENTICATED: logging.INFO,
    grpc.StatusCode.DEADLINE_EXCEEDED: logging.WARNING,
    grpc.StatusCode.PERMISSION_DENIED: logging.WARNING,
    grpc.StatusCode.RESOURCE_EXHAUSTED: logging.WARNING,
    grpc.StatusCode.FAILED_PRECONDITION: logging.WARNING,
    grpc.StatusCode.ABORTED: logging.WARNING,
    grpc.StatusCode.OUT_OF_RANGE: logging.WARNING,
    grpc.StatusCode.UNAVAILABLE: logging.WARNING,
}


def level_for(code: grpc.StatusCode) -> int:
    """Log level of an outcome: info for success and caller mistakes, warning for refusals, error for bugs."""
    return _LEVELS.get(code, logging.ERROR)


class AccessLogConcern:
    """Writes the access line in `after`, once the final code is known."""

    def __init__(self, logger_name: str = "baton.access", *, trace_ids: bool = False) -> None:
        self._trace = None
        if trace_ids:
            from opentelemetry import trace

            self._trace = trace
        self._log = AccessLog(logger_name)
        self._min_level = self._log.min_level
        self._rpc = self._log.rpc

    def before(self, call: Call) -> None:
        """Remember the peer (the only thing needed from the context up front)."""
        call.peer = call.context.peer() or ""

    def after(self, call: Call) -> None:
        """Log the call."""
        code = call.code
        if code is _OK:  # without hashing the enum (a Python-level Enum.__hash__) or its `name` property
            level, code_name = logging.INFO, "OK"
        else:
            level, code_name = level_for(code), code.name
        if level < self._min_level:
            return
        principal = call.principal
        trace_id = span_id = None
        if self._trace is not None:
            context = self._trace.get_current_span().get_span_context()
            if context.is_valid:
                trace_id, span_id = format(context.trace_id, "032x"), format(context.span_id, "016x")
        self._rpc(
            (
                level,
                time.time(),
                call.policy.full_method,
                code_name,
                # to the microsecond (cheaper than round)
                int((time.perf_counter() - call.started) * 1_000_000 + 0.5) / 1000,
                call.peer,
                principal.id if principal is not None else None,
                principal.auth_method if principal is not None else None,
                call.request_id,
                trace_id,
                span_id,
                call.details if code is not _OK and call.details else None,
            )
        )
