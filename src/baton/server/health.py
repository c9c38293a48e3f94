"""The standard gRPC health service, with readiness that follows the database.

- `""` (readiness): SERVING while the database answers, its migrations are current and the server is not
  draining.
- `liveness`: SERVING while the event loop answers the call at all.
- every Baton service name: follows readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from baton.observability.logging import get_logger

LIVENESS = "liveness"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
HEALTH_SERVICE = "grpc.health.v1.Health"

log = get_logger(__name__)

#: Returns None when ready, else the reason it is not.
ReadinessProbe = Callable[[], Awaitable[str | None]]


class Health:
    """Owns the health servicer and keeps readiness current by probing every `interval` seconds."""

    def __init__(self, services: Sequence[str], probe: ReadinessProbe, interval: float = 5.0) -> None:
        self.servicer = HealthServicer()
        self._services = ["", *services]
        self._probe = probe
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._ready: bool | None = None
        self.draining = False

    def add_to(self, server: Any) -> None:
        """Register the health service on the server."""
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)

    async def start(self) -> None:
        """Probe once, publish the statuses, and keep probing in the background."""
        await self.servicer.set(LIVENESS, SERVING)
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="baton-health")

    async def refresh(self) -> bool:
        """Probe now and publish the result; returns whether the server is ready."""
        reason = "draining" if self.draining else await self._safe_probe()
        ready = reason is None
        if ready != self._ready:
            if ready:
                log.info("health.ready")
            else:
                log.warning("health.not_ready", reason=reason)
            self._ready = ready
        for service in self._services:
            await self.servicer.set(service, SERVING if ready else NOT_SERVING)
        return ready

    async def drain(self) -> None:
        """Turn readiness and every service NOT_SERVING for good (liveness too, once stopping)."""
        self.draining = True
        for service in self._services:
            await self.servicer.set(service, NOT_SERVING)

    async def stop(self) -> None:
        """Stop probing and mark everything NOT_SERVING."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.servicer.enter_graceful_shutdown()

    async def _safe_probe(self) -> str | None:
        try:
            return await asyncio.wait_for(self._probe(), timeout=max(self._interval, 1.0))
        except TimeoutError:
            return "database probe timed out"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return f"database probe failed: {type(exc).__name__}"

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            if not self.draining:
                await self.refresh()
