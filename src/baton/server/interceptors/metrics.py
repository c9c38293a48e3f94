"""gRPC server metrics with go-grpc-prometheus names, labels and label values.

py-grpc-prometheus cannot wrap a grpc.aio server (its interceptor is sync-only, lchenn/py-grpc-prometheus#13), so
this concern records the same series over prometheus-client. Every series of every method is created at start-up
(zero values, as go-grpc-prometheus's InitializeMetrics does), and label children are cached so the per-call cost
is a few dictionary-free increments.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from baton.server.interceptors.base import Call
from baton.server.policy import MethodPolicy

#: grpc.StatusCode → the Go codes.Code string used as the grpc_code label.
GO_CODE_NAMES: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}

_LABELS = ("grpc_type", "grpc_service", "grpc_method")


class ServerMetrics:
    """The five grpc_server_* metric families, registered once per registry."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.started = Counter(
            "grpc_server_started", "Total number of RPCs started on the server.", _LABELS, registry=registry
        )
        self.handled = Counter(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            (*_LABELS, "grpc_code"),
            registry=registry,
        )
        self.handling_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
            _LABELS,
            registry=registry,
        )
        self.received = Counter(
            "grpc_server_msg_received",
            "Total number of RPC stream messages received on the server.",
            _LABELS,
            registry=registry,
        )
        self.sent = Counter(
            "grpc_server_msg_sent",
            "Total number of gRPC stream messages sent by the server.",
            _LABELS,
            registry=registry,
        )


class _MethodSeries:
    __slots__ = ("handled", "received", "seconds", "sent", "started")

    def __init__(self, metrics: ServerMetrics, policy: MethodPolicy) -> None:
        labels = (policy.kind.value, policy.service, policy.method)
        self.started = metrics.started.labels(*labels)
        self.handled = {code: metrics.handled.labels(*labels, name) for code, name in GO_CODE_NAMES.items()}
        self.seconds = metrics.handling_seconds.labels(*labels)
        self.received = metrics.received.labels(*labels)
        self.sent = metrics.sent.labels(*labels)


class MetricsConcern:
    """Counts starts in `before` and outcomes, latency and messages in `after`."""

    def __init__(self, metrics: ServerMetrics, policies: Iterable[MethodPolicy]) -> None:
        self._metrics = metrics
        self._series = {policy.full_method: _MethodSeries(metrics, policy) for policy in policies}

    def _for(self, policy: MethodPolicy) -> _MethodSeries:
        series = self._series.get(policy.full_method)
        if series is None:  # a method outside the policy table (refused by default)
            series = self._series[policy.full_method] = _MethodSeries(self._metrics, policy)
        return series

    def before(self, call: Call) -> None:
        """Count the start."""
        self._for(call.policy).started.inc()

    def after(self, call: Call) -> None:
        """Count the outcome with its code, the latency and the messages."""
        series = self._for(call.policy)
        series.handled[call.code].inc()
        series.seconds.observe(call.elapsed())
        if call.messages_received:
            series.received.inc(call.messages_received)
        if call.messages_sent:
            series.sent.inc(call.messages_sent)


_DEFAULT: ServerMetrics | None = None


def default_server_metrics() -> ServerMetrics:
    """The process-wide families on the default registry (servers in one process share them)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = ServerMetrics()
    return _DEFAULT
