"""The small interfaces the server's auth concerns depend on; implementations know nothing of gRPC."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from baton.auth.principal import Principal


class Authenticator(Protocol):
    """Decides who a caller is from its request metadata."""

    def cached(self, metadata: Mapping[str, str]) -> Principal | None:
        """The principal for an API key verified within the cache period, without an await or the database;
        None when `authenticate` must decide (no key, another kind of credential, a cache miss)."""
        ...

    async def authenticate(self, metadata: Mapping[str, str]) -> Principal | None:
        """The principal for `x-api-key` or `authorization: Bearer` metadata; None when no credentials were
        sent; raises baton.errors.Unauthenticated for credentials that are invalid, expired, revoked or belong
        to a disabled principal."""
        ...


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One security event. Never carries secrets."""

    action: str
    outcome: str
    principal_id: str | None = None
    method: str = ""
    peer: str = ""
    request_id: str = ""
    namespace: str | None = None
    details: Mapping[str, str] = field(default_factory=dict)


class AuditSink(Protocol):
    """Takes security events without blocking the caller."""

    def record(self, event: AuditRecord) -> None:
        """Queue the event for writing."""
        ...
