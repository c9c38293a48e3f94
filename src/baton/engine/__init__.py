"""The orchestration engine: the handler registry now; dispatch, leases, timers and notifications to come."""

from baton.engine.handlers import (
    HandlerRegistry,
    NamespaceSummary,
    RegisteredHandler,
    handler_defaults,
)

__all__ = ["HandlerRegistry", "NamespaceSummary", "RegisteredHandler", "handler_defaults"]
