"""OpenTelemetry tracing, configured by the standard OTEL_* variables.

With no exporter configured no tracer provider is built, the server installs no tracing interceptor, and no spans
are recorded: tracing then costs nothing. `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_TRACES_EXPORTER=otlp`) exports
over OTLP/gRPC; the SDK itself reads the rest (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_TRACES_SAMPLER`, `OTEL_EXPORTER_OTLP_HEADERS`, …).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from baton.about import VERSION
from baton.config import TelemetryConfig

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider


def build_tracer_provider(config: TelemetryConfig) -> TracerProvider | None:
    """A provider exporting to the configured exporter, or None when tracing is off (the SDK is then not even
    imported)."""
    if config.traces_exporter is None:
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if config.traces_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    elif config.traces_exporter == "console":
        exporter = ConsoleSpanExporter()
    else:
        return None
    resource = Resource.create({SERVICE_NAME: config.service_name, SERVICE_VERSION: VERSION})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
