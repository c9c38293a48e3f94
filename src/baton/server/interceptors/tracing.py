"""Tracing: OpenTelemetry's aio server interceptor makes the span; this concern annotates it.

The span (one per RPC, W3C trace context taken from the caller) is opened by opentelemetry-instrumentation-grpc's
interceptor, placed just outside the chain when a tracer provider exists. Inside the chain the span is current, so
this concern adds the request ID and, once known, the principal.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import grpc

from baton.server.interceptors.base import Call

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

REQUEST_ID_ATTRIBUTE = "baton.request_id"
PRINCIPAL_ATTRIBUTE = "enduser.id"


def span_interceptor(provider: TracerProvider, untraced_services: Iterable[str]) -> grpc.aio.ServerInterceptor:
    """OpenTelemetry's server interceptor, skipping the given services (health, reflection)."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

    skip = [filters.service_name(name) for name in untraced_services]
    interceptor: grpc.aio.ServerInterceptor = aio_server_interceptor(  # type: ignore[no-untyped-call]
        tracer_provider=provider, filter_=filters.negate(filters.any_of(*skip))
    )
    return interceptor


class TracingConcern:
    """Adds the request ID and principal to the current span when it is recording (in the chain only when a
    tracer provider exists)."""

    def __init__(self) -> None:
        from opentelemetry import trace

        self._current_span = trace.get_current_span

    def before(self, call: Call) -> None:
        """Tag the span with the request ID."""
        span = self._current_span()
        if span.is_recording():
            span.set_attribute(REQUEST_ID_ATTRIBUTE, call.request_id)

    def after(self, call: Call) -> None:
        """Tag the span with the principal."""
        if call.principal is None:
            return
        span = self._current_span()
        if span.is_recording():
            span.set_attribute(PRINCIPAL_ATTRIBUTE, call.principal.id)
