"""The sync client's py-grpc-prometheus client metrics and OpenTelemetry client spans."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY

from baton.client import ApiKeyCredentials, Client, NotFoundError
from tests.support.server import ADMIN_KEY, RunningServer


def handled(method: str, code: str) -> float:
    labels = {"grpc_type": "UNARY", "grpc_service": "baton.v1.TaskService", "grpc_method": method, "grpc_code": code}
    return REGISTRY.get_sample_value("grpc_client_handled_total", labels) or 0.0


class Recorder(grpc.UnaryUnaryClientInterceptor):
    """The metadata and timeout of every outgoing unary call, as grpcio gets them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float | None, dict[str, str]]] = []

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        details = client_call_details
        self.calls.append((details.method, details.timeout, dict(details.metadata or ())))
        return continuation(details, request)


def _metrics_and_spans(target: str) -> tuple[list[Any], Recorder]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    before = handled("GetTask", "NOT_FOUND")
    with Client.connect(target, api_key=ADMIN_KEY, metrics=True, tracer_provider=provider) as client:
        with pytest.raises(NotFoundError):
            client.tasks.get("no-such-task")
        client.tasks.list("payments")
    with Client.connect(target, api_key=ADMIN_KEY, metrics=True) as again:  # metrics register once per process
        again.tasks.list("payments")
    assert handled("GetTask", "NOT_FOUND") == before + 1
    assert handled("ListTasks", "OK") >= 2

    recorder = Recorder()
    channel = grpc.intercept_channel(grpc.insecure_channel(target), recorder)
    with Client(channel, credentials=ApiKeyCredentials(ADMIN_KEY), tracer_provider=provider) as own:
        own.tasks.list("payments", request_id="traced-1", timeout=3)
    return list(exporter.get_finished_spans()), recorder


async def test_metrics_and_spans(server: RunningServer) -> None:
    spans, recorder = await asyncio.to_thread(_metrics_and_spans, server.target)
    by_name = {span.name: span for span in spans}
    get = by_name["/baton.v1.TaskService/GetTask"]
    assert get.kind == SpanKind.CLIENT
    assert get.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert "/baton.v1.TaskService/ListTasks" in by_name

    [(method, timeout, metadata)] = recorder.calls
    assert method == "/baton.v1.TaskService/ListTasks"
    assert timeout is not None
    assert 2 < timeout <= 3
    assert metadata["x-request-id"] == "traced-1"
    assert metadata["x-api-key"] == ADMIN_KEY
    assert metadata["traceparent"].split("-")[1] == format(spans[-1].context.trace_id, "032x")
