"""gRPC server metrics with go-grpc-prometheus names, labels and label values.

py-grpc-prometheus cannot wrap a grpc.aio server (its interceptor is sync-only, lchenn/py-grpc-prometheus#13), so
this concern records the same series itself. Calls are counted in plain per-method slots on the event loop's
thread — no label lookups, no locks — and a prometheus-client custom collector turns them into the five
`grpc_server_*` families when /metrics is scraped. Every series of every method exists from start-up (zero values,
as go-grpc-prometheus's InitializeMetrics does). Reads from the scrape thread see each counter whole (the GIL), so
at worst a scrape is one call behind.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

import grpc
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

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

_OK = grpc.StatusCode.OK
_LABELS = ["grpc_type", "grpc_service", "grpc_method"]
#: prometheus-client's (and Go's prometheus.DefBuckets) default latency buckets, in seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


class MethodSeries:
    """The counts of one method."""

    __slots__ = ("buckets", "handled", "handled_ok", "labels", "received", "seconds_sum", "sent", "started")

    def __init__(self, policy: MethodPolicy) -> None:
        self.labels = [policy.kind.value, policy.service, policy.method]
        self.started = 0
        self.handled_ok = 0  # apart from `handled`: a StatusCode is hashed by a Python-level Enum.__hash__
        self.handled = dict.fromkeys(GO_CODE_NAMES, 0)
        self.received = 0
        self.sent = 0
        self.buckets = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.seconds_sum = 0.0


class ServerMetrics(Collector):
    """Holds every method's series and exposes them as the go-grpc-prometheus families."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        self.series: dict[str, MethodSeries] = {}
        if registry is not None:
            registry.register(self)

    def series_for(self, policy: MethodPolicy) -> MethodSeries:
        """The series of a method, created (at zero) on first use."""
        series = self.series.get(policy.full_method)
        if series is None:
            series = self.series[policy.full_method] = MethodSeries(policy)
        return series

    def collect(self) -> Iterator[Metric]:
        """The five families, for a scrape."""
        started = CounterMetricFamily(
            "grpc_server_started", "Total number of RPCs started on the server.", labels=_LABELS
        )
        handled = CounterMetricFamily(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            labels=[*_LABELS, "grpc_code"],
        )
        received = CounterMetricFamily(
            "grpc_server_msg_received", "Total number of RPC stream messages received on the server.", labels=_LABELS
        )
        sent = CounterMetricFamily(
            "grpc_server_msg_sent", "Total number of gRPC stream messages sent by the server.", labels=_LABELS
        )
        seconds = HistogramMetricFamily(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
            labels=_LABELS,
        )
        for series in list(self.series.values()):
            started.add_metric(series.labels, series.started)
            for code, count in list(series.handled.items()):
                total_count = count + series.handled_ok if code is _OK else count
                handled.add_metric([*series.labels, GO_CODE_NAMES[code]], total_count)
            received.add_metric(series.labels, series.received)
            sent.add_metric(series.labels, series.sent)
            cumulative, total = [], 0
            for bound, count in zip((*BUCKETS, float("inf")), series.buckets, strict=True):
                total += count
                cumulative.append((_bound_text(bound), total))
            seconds.add_metric(series.labels, cumulative, series.seconds_sum)
        yield from (started, handled, seconds, received, sent)


def _bound_text(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class MetricsConcern:
    """Counts starts in `before` and outcomes, latency and messages in `after`."""

    def __init__(self, metrics: ServerMetrics, policies: Iterable[MethodPolicy]) -> None:
        self._metrics = metrics
        for policy in policies:
            metrics.series_for(policy)

    def before(self, call: Call) -> None:
        """Count the start."""
        self._metrics.series_for(call.policy).started += 1

    def after(self, call: Call) -> None:
        """Count the outcome with its code, the latency and the messages."""
        series = self._metrics.series_for(call.policy)
        code = call.code
        if code is _OK:
            series.handled_ok += 1
        else:
            series.handled[code] += 1
        elapsed = call.elapsed()
        series.buckets[bisect.bisect_left(BUCKETS, elapsed)] += 1
        series.seconds_sum += elapsed
        series.received += call.messages_received
        series.sent += call.messages_sent


_DEFAULT: ServerMetrics | None = None


def default_server_metrics() -> ServerMetrics:
    """The process-wide collector on the default registry (servers in one process share it)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = ServerMetrics()
    return _DEFAULT
