"""The call being served, as a context variable, so log lines can name its request ID and principal.

The server's chain sets it once per RPC (each RPC runs in its own task, so nothing leaks between calls); the
`add_call_context` log processor reads it. Binding per-call log context this way costs one ContextVar.set.
"""

from __future__ import annotations

import contextvars
from collections.abc import MutableMapping
from typing import Any

CURRENT_CALL: contextvars.ContextVar[Any] = contextvars.ContextVar("baton_call", default=None)


def add_call_context(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: add request_id (and principal, once known) of the call being served."""
    call = CURRENT_CALL.get()
    if call is not None:
        if call.request_id:
            event.setdefault("request_id", call.request_id)
        principal = call.principal
        if principal is not None:
            event.setdefault("principal", principal.id)
    return event
