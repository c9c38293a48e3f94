"""The interceptor chain, built in this one function, outermost first.

Read `build_chain` top to bottom to know what every request goes through:

    request ID → tracing → metrics + access log → error boundary → admission (concurrent calls)
    → authentication → authorization → rate limit → deadline → servicer

The chain wraps every method handler once, when services are registered (registrar.py). Tracing spans are
opened by OpenTelemetry's own aio interceptor, the one gRPC interceptor left, placed outside the chain and only
when a tracer provider exists (so tracing without an exporter costs nothing); inside, the tracing concern
annotates the span. The error boundary is the chain's exception handler: it turns whatever the inner concerns or
the servicer raise into a google.rpc.Status before the `after` hooks of metrics and the access log run, so they
see the final code.

Exemptions are declared here and nowhere else: health and reflection get request IDs, metrics and access logs
but no admission limit, authentication, authorization, rate limit or deadline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from baton.auth.interfaces import AuditSink, Authenticator
from baton.config import RateLimitConfig
from baton.ratelimit import RateLimiter
from baton.server.interceptors.access_log import AccessLogConcern
from baton.server.interceptors.auth import AuthenticationConcern, AuthorizationConcern
from baton.server.interceptors.base import Chain, Concern
from baton.server.interceptors.concurrency import ConcurrencyConcern
from baton.server.interceptors.deadline import DeadlineConcern
from baton.server.interceptors.errors import ErrorBoundary
from baton.server.interceptors.metrics import MetricsConcern, ServerMetrics
from baton.server.interceptors.ratelimit import RateLimitConcern
from baton.server.interceptors.request_id import RequestIdConcern
from baton.server.interceptors.tracing import TracingConcern, span_interceptor
from baton.server.policy import MethodPolicy, exempt_policies
from baton.server.reflection import V1_SERVICE, V1ALPHA_SERVICE

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

#: Infrastructure services: no credentials, no rate limit, no default deadline.
EXEMPT_SERVICES = ("grpc.health.v1.Health", V1_SERVICE, V1ALPHA_SERVICE)


@dataclass(frozen=True)
class ChainDependencies:
    """The policies the chain enforces and the components that decide."""

    policies: Mapping[str, MethodPolicy]
    authenticator: Authenticator
    audit: AuditSink
    limiter: RateLimiter | None
    rate_limit: RateLimitConfig
    metrics: ServerMetrics
    tracer_provider: TracerProvider | None = None
    #: Calls admitted at once (BATON_MAX_CONCURRENT_RPCS); None for no limit.
    max_concurrent_rpcs: int | None = None


@dataclass(frozen=True)
class BuiltChain:
    """The gRPC interceptors to give the server (outermost first) and the chain to register services with."""

    interceptors: list[grpc.aio.ServerInterceptor]
    chain: Chain


def build_chain(deps: ChainDependencies) -> BuiltChain:
    """The server's chain, outermost first."""
    exempt = exempt_policies((health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR))
    exempt.update(
        {
            name.replace(V1ALPHA_SERVICE, V1_SERVICE): policy_for_v1(policy)
            for name, policy in exempt.items()
            if policy.service == V1ALPHA_SERVICE
        }
    )
    policies = {**deps.policies, **exempt}

    tracing_on = deps.tracer_provider is not None
    request_id = RequestIdConcern()
    metrics = MetricsConcern(deps.metrics, policies.values())
    access_log = AccessLogConcern(trace_ids=tracing_on)
    outer: list[Concern] = [request_id, TracingConcern()] if tracing_on else [request_id]
    outer += [metrics, access_log]
    # The error boundary sits here (Chain's exception handler).
    concerns: list[Concern] = [*outer]
    if deps.max_concurrent_rpcs is not None:
        concerns.append(ConcurrencyConcern(deps.max_concurrent_rpcs))
    concerns += [
        AuthenticationConcern(
            deps.authenticator,
            deps.audit,
            deps.limiter if deps.rate_limit.rate_limit_enabled else None,
            (deps.rate_limit.rate_limit_rps, deps.rate_limit.rate_limit_burst),
        ),
        AuthorizationConcern(deps.audit),
    ]
    if deps.limiter is not None and deps.rate_limit.rate_limit_enabled:
        concerns.append(RateLimitConcern(deps.limiter, deps.rate_limit))
    concerns.append(DeadlineConcern())
    exempt_concerns: list[Concern] = list(outer)

    interceptors: list[grpc.aio.ServerInterceptor] = []
    if deps.tracer_provider is not None:
        interceptors.append(span_interceptor(deps.tracer_provider, EXEMPT_SERVICES))
    return BuiltChain(interceptors, Chain(policies, concerns, exempt_concerns, ErrorBoundary()))


def policy_for_v1(policy: MethodPolicy) -> MethodPolicy:
    """The v1 reflection service's policy, copied from v1alpha's."""
    from dataclasses import replace

    return replace(
        policy,
        full_method=policy.full_method.replace(V1ALPHA_SERVICE, V1_SERVICE),
        service=V1_SERVICE,
    )
