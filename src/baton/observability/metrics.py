"""The Prometheus /metrics endpoint on its own port, and build info."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from threading import Thread
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Info, start_http_server

from baton.about import VERSION

BUILD_INFO = Info("baton_build", "Baton build information.")
BUILD_INFO.info({"version": VERSION, "python": platform.python_version()})


@dataclass
class MetricsEndpoint:
    """A running /metrics HTTP server."""

    server: Any
    thread: Thread

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        return int(self.server.server_address[1])

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_metrics(host: str, port: int, registry: CollectorRegistry = REGISTRY) -> MetricsEndpoint:
    """Serve `registry` at http://host:port/metrics from a daemon thread."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsEndpoint(server=server, thread=thread)
