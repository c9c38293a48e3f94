"""Authentication and authorization: who is calling, and may they call this method on this namespace.

The decisions live in baton.auth (an Authenticator, the Principal's permission sets); these concerns only read
metadata and the request, and turn a refusal into UNAUTHENTICATED or PERMISSION_DENIED with an audit event.

Namespace scoping: when the method's policy names the request field holding the namespace, the caller needs the
permission globally or in that namespace, else PERMISSION_DENIED (the namespace is the caller's own input, so the
refusal reveals nothing). Methods that address a resource by ID need the permission in at least one namespace here;
the servicer then answers NOT_FOUND for a resource in a namespace the caller may not read, so that IDs in other
namespaces cannot be probed.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from prometheus_client import Counter

from baton.auth.interfaces import AuditRecord, AuditSink, Authenticator
from baton.errors import PermissionDenied, RateLimited, Unauthenticated
from baton.ratelimit import RateLimiter
from baton.server.interceptors.base import Call
from baton.server.interceptors.ratelimit import peer_host

AUTH_FAILURES = Counter(
    "baton_auth_failures", "Calls refused by authentication or authorization.", ("reason", "grpc_service")
)


def request_namespace(request: Any, path: str) -> str:
    """The value at a dotted field path of a request message ("" when unset)."""
    value = request
    for part in path.split("."):
        value = getattr(value, part, "")
    return value if isinstance(value, str) else ""


class AuthenticationConcern:
    """Sets call.principal; refuses calls to non-public methods without valid credentials.

    Refused calls spend a token from the caller's per-peer bucket (the one anonymous calls use), since the rate
    limit further down the chain never sees them: a peer that keeps presenting bad or no credentials gets
    RESOURCE_EXHAUSTED, and stops costing audit writes and credential lookups.
    """

    def __init__(
        self,
        authenticator: Authenticator,
        audit: AuditSink,
        limiter: RateLimiter | None = None,
        peer_limits: tuple[float, int] = (1.0, 1),
    ) -> None:
        self._authenticator = authenticator
        self._audit = audit
        self._limiter = limiter
        self._peer_limits = peer_limits

    def before(self, call: Call) -> Awaitable[None] | None:
        """Authenticate the caller (public methods skip it)."""
        if call.policy.public:
            return None
        principal = self._authenticator.cached(call.metadata)
        if principal is not None:
            call.principal = principal
            return None
        return self._authenticate(call)

    async def _authenticate(self, call: Call) -> None:
        try:
            principal = await self._authenticator.authenticate(call.metadata)
        except Unauthenticated as error:
            await self._refuse(call, "invalid_credentials", error.message)
            raise
        if principal is None:
            await self._refuse(call, "missing_credentials", "no credentials")
            raise Unauthenticated(
                "this method needs credentials: send `x-api-key: <key>` or `authorization: Bearer <token>`",
                reason="CREDENTIALS_MISSING",
            )
        call.principal = principal

    async def _refuse(self, call: Call, reason: str, message: str) -> None:
        AUTH_FAILURES.labels(reason, call.policy.service).inc()
        peer = call.context.peer() or ""
        if self._limiter is not None:
            rate, burst = self._peer_limits
            verdict = await self._limiter.acquire(f"peer:{peer_host(peer)}", 1, rate, burst)
            if not verdict.allowed:
                raise RateLimited(
                    f"too many calls without valid credentials from this address; retry in {verdict.retry_after:.2f}s",
                    retry_after=verdict.retry_after,
                    metadata={"reason": reason},
                )
        self._audit.record(
            AuditRecord(
                action="authentication.failed",
                outcome="denied",
                method=call.policy.full_method,
                peer=peer,
                request_id=call.request_id,
                details={"reason": reason, "message": message},
            )
        )

    def after(self, call: Call) -> None:
        """Nothing to undo."""


class AuthorizationConcern:
    """Checks the method's permission, in the request's namespace when the policy names one. Default deny."""

    def __init__(self, audit: AuditSink) -> None:
        self._audit = audit

    def before(self, call: Call) -> None:
        """Refuse the call unless the principal holds the permission where it is needed."""
        policy = call.policy
        principal = call.principal
        if policy.public or not policy.permission or principal is None:
            return
        namespace = request_namespace(call.request, policy.namespace_field) if policy.namespace_field else ""
        allowed = (
            principal.can(policy.permission, namespace) if namespace else principal.can_somewhere(policy.permission)
        )
        if allowed:
            return
        AUTH_FAILURES.labels("permission_denied", policy.service).inc()
        self._audit.record(
            AuditRecord(
                action="permission.denied",
                outcome="denied",
                principal_id=principal.id,
                method=policy.full_method,
                peer=call.context.peer() or "",
                request_id=call.request_id,
                namespace=namespace or None,
                details={"permission": policy.permission},
            )
        )
        where = f" in namespace {namespace!r}" if namespace else ""
        raise PermissionDenied(
            f"{principal.username} lacks permission {policy.permission!r}{where}",
            reason="PERMISSION_DENIED",
            metadata={"permission": policy.permission, **({"namespace": namespace} if namespace else {})},
        )

    def after(self, call: Call) -> None:
        """Nothing to undo."""
