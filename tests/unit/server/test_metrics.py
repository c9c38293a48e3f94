"""The gRPC server metrics collector: go-grpc-prometheus names, zero series up front, histogram buckets."""

from __future__ import annotations

from typing import Any

import grpc
from prometheus_client import CollectorRegistry, generate_latest

from baton.server.interceptors.base import Call
from baton.server.interceptors.metrics import MetricsConcern, ServerMetrics
from baton.server.policy import load_policies


class _Context:
    def invocation_metadata(self) -> tuple[()]:
        return ()


def _call(policy: Any, code: grpc.StatusCode, elapsed: float) -> Call:
    call = Call(policy, _Context(), None)  # type: ignore[arg-type]
    call.started -= elapsed
    call.code = code
    call.messages_received = 1
    call.messages_sent = 1 if code == grpc.StatusCode.OK else 0
    return call


def test_series_and_values() -> None:
    registry = CollectorRegistry()
    policies = load_policies()
    concern = MetricsConcern(ServerMetrics(registry), policies.values())
    whoami = policies["/baton.v1.AuthService/WhoAmI"]
    labels = {"grpc_type": "unary", "grpc_service": "baton.v1.AuthService", "grpc_method": "WhoAmI"}
    # Zero series exist before any call, for every method and code.
    assert registry.get_sample_value("grpc_server_handled_total", {**labels, "grpc_code": "Unauthenticated"}) == 0
    for code, elapsed in ((grpc.StatusCode.OK, 0.003), (grpc.StatusCode.OK, 0.2), (grpc.StatusCode.NOT_FOUND, 20)):
        call = _call(whoami, code, elapsed)
        concern.before(call)
        concern.after(call)
    assert registry.get_sample_value("grpc_server_started_total", labels) == 3
    assert registry.get_sample_value("grpc_server_handled_total", {**labels, "grpc_code": "OK"}) == 2
    assert registry.get_sample_value("grpc_server_handled_total", {**labels, "grpc_code": "NotFound"}) == 1
    assert registry.get_sample_value("grpc_server_msg_received_total", labels) == 3
    assert registry.get_sample_value("grpc_server_msg_sent_total", labels) == 2
    assert registry.get_sample_value("grpc_server_handling_seconds_bucket", {**labels, "le": "0.005"}) == 1
    assert registry.get_sample_value("grpc_server_handling_seconds_bucket", {**labels, "le": "0.25"}) == 2
    assert registry.get_sample_value("grpc_server_handling_seconds_bucket", {**labels, "le": "10.0"}) == 2
    assert registry.get_sample_value("grpc_server_handling_seconds_bucket", {**labels, "le": "+Inf"}) == 3
    assert registry.get_sample_value("grpc_server_handling_seconds_count", labels) == 3
    assert 20 < (registry.get_sample_value("grpc_server_handling_seconds_sum", labels) or 0) < 20.3
    text = generate_latest(registry).decode()
    assert "# TYPE grpc_server_handling_seconds histogram" in text
    assert "# TYPE grpc_server_handled_total counter" in text
