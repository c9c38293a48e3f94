"""What the parts of AuthManager share: their dependencies, the records they return, validation helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from baton.auth.credential_repository import ApiKeyRepository, RefreshTokenRepository
from baton.auth.interfaces import AuditRecord, AuditSink
from baton.auth.passwords import Passwords, password_violations
from baton.auth.principal import RoleBinding
from baton.auth.repository import HUMAN, UserRecord, UserRepository
from baton.auth.tokens import TokenCodec
from baton.errors import FieldViolation, InvalidArgument
from baton.store import SqlStore

MAX_DISPLAY_NAME_LENGTH = 256


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What Login and RefreshToken return."""

    access_token: str
    access_token_expire_time: datetime
    refresh_token: str
    refresh_token_expire_time: datetime
    user: UserRecord


@dataclass(frozen=True, slots=True)
class UserChanges:
    """New values for UpdateUser; only the fields named in the update mask are applied."""

    display_name: str = ""
    role_bindings: tuple[RoleBinding, ...] = ()
    disabled: bool = False
    password: str = ""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made an administrative change, for the audit log (the servicer fills it from the call)."""

    principal_id: str | None = None
    peer: str = ""
    request_id: str = ""


class CredentialCache(Protocol):
    """What the manager tells the authenticator when credentials change (CachingAuthenticator does this)."""

    def invalidate_key(self, key_id: str) -> None:
        """Forget a key."""
        ...

    def invalidate_principal(self, principal_id: str) -> None:
        """Forget a principal and its keys."""
        ...


def invalid(violations: list[FieldViolation]) -> InvalidArgument:
    """InvalidArgument listing every violation in its message too."""
    summary = "; ".join(f"{v.field} {v.description}" for v in violations)
    return InvalidArgument(f"invalid request: {summary}", field_violations=violations)


def malformed_page_token() -> InvalidArgument:
    """The error for a page token whose position does not parse."""
    return InvalidArgument(
        "page_token is not a token this server issued",
        field_violations=[FieldViolation("page_token", "malformed page token")],
    )


def display_name_violations(display_name: str, field: str) -> list[FieldViolation]:
    """What is wrong with a display name."""
    if len(display_name) > MAX_DISPLAY_NAME_LENGTH:
        return [FieldViolation(field, f"must be at most {MAX_DISPLAY_NAME_LENGTH} characters")]
    return []


def kind_password_violations(kind: str, password: str) -> list[FieldViolation]:
    """People need a password of 12+ characters; service accounts must not have one."""
    if kind == HUMAN:
        return password_violations(password)
    return [FieldViolation("password", "service accounts have no password; use API keys")] if password else []


def roles_text(bindings: Iterable[RoleBinding]) -> str:
    """Bindings as "admin,viewer@billing" for audit details."""
    return ",".join(f"{b.role.value}@{b.namespace}" if b.namespace else b.role.value for b in bindings)


class ManagerBase:
    """Repositories, token codec, password hasher, audit sink, cache and clock of an AuthManager."""

    def __init__(
        self,
        store: SqlStore,
        *,
        tokens: TokenCodec,
        audit: AuditSink,
        passwords: Passwords | None = None,
        cache: CredentialCache | None = None,
        refresh_token_ttl_seconds: int = 30 * 86_400,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._users = UserRepository(store)
        self._keys = ApiKeyRepository(store)
        self._refresh_tokens = RefreshTokenRepository(store)
        self._tokens = tokens
        self._audit = audit
        self._passwords = passwords or Passwords()
        self._cache = cache
        self._refresh_ttl = timedelta(seconds=refresh_token_ttl_seconds)
        self._clock = clock

    def _record(self, action: str, outcome: str, actor: Actor | None, **details: Any) -> None:
        actor = actor or Actor()
        self._audit.record(
            AuditRecord(
                action=action,
                outcome=outcome,
                principal_id=actor.principal_id,
                peer=actor.peer,
                request_id=actor.request_id,
                details={key: _text(value) for key, value in details.items()},
            )
        )


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
