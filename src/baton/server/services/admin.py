"""AdminService: detailed status and the audit trail."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from baton.about import VERSION
from baton.auth.audit import AuditEventRecord
from baton.errors import Unavailable
from baton.server.convert import duration, timestamp
from baton.store import SqlStore, StorageError
from baton.v1 import admin_pb2, admin_pb2_grpc


class _RateLimitState(Protocol):
    @property
    def backend(self) -> str: ...

    @property
    def state(self) -> str: ...


class _AuditReader(Protocol):
    async def list_events(self, page_size: int, page_token: str, filter: str) -> tuple[list[AuditEventRecord], str]: ...


def audit_event(record: AuditEventRecord) -> admin_pb2.AuditEvent:
    """The proto of one audit event."""
    return admin_pb2.AuditEvent(
        id=record.id,
        create_time=timestamp(record.create_time),
        action=record.action,
        outcome=record.outcome,
        principal_id=record.principal_id or "",
        method=record.method,
        peer=record.peer,
        request_id=record.request_id,
        namespace=record.namespace or "",
        details=dict(record.details),
    )


class AdminService(admin_pb2_grpc.AdminServiceServicer):
    """Status of this server and the audit log."""

    def __init__(
        self,
        store: SqlStore,
        limiter: _RateLimitState | None,
        audit: _AuditReader,
        started_at: float,
        draining: Callable[[], bool],
    ) -> None:
        self._store = store
        self._limiter = limiter
        self._audit = audit
        self._started_at = started_at
        self._draining = draining

    async def GetStatus(self, request: admin_pb2.GetStatusRequest, context: Any) -> admin_pb2.ServerStatus:
        """Version, uptime, database round trip and revision, rate-limit state, task counts, workers."""
        try:
            round_trip = await self._store.ping()
            migration = await self._store.migration_status()
            counts = await self._store.count_tasks_by_state()
            workers = await self._store.count_active_workers(60.0)
        except StorageError as error:
            raise Unavailable(f"database unavailable: {error}", retry_after=1.0) from error
        now = time.time()
        return admin_pb2.ServerStatus(
            version=VERSION,
            start_time=timestamp(datetime.fromtimestamp(self._started_at, UTC)),
            uptime=duration(now - self._started_at),
            database_backend=self._store.backend,
            database_round_trip=duration(round_trip),
            migration_revision=migration.current or "",
            rate_limit_backend=self._limiter.backend if self._limiter is not None else "off",
            rate_limit_state=self._limiter.state if self._limiter is not None else "off",
            tasks_by_state=counts,
            active_workers=workers,
            serving=not self._draining(),
        )

    async def ListAuditEvents(
        self, request: admin_pb2.ListAuditEventsRequest, context: Any
    ) -> admin_pb2.ListAuditEventsResponse:
        """Pages through the audit log, newest first, with an AIP-160 filter."""
        events, next_token = await self._audit.list_events(request.page_size, request.page_token, request.filter)
        return admin_pb2.ListAuditEventsResponse(
            audit_events=[audit_event(e) for e in events], next_page_token=next_token
        )
