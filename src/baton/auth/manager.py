"""AuthManager: the business logic behind AuthService and UserService, in one object for the servicers.

It returns plain frozen dataclasses (UserRecord, ApiKeyRecord, TokenGrant) and raises baton.errors; the
servicers only convert. Every security event goes to the audit sink. Changes that affect authentication
invalidate the authenticator's caches on this replica at once (through `cache`); other replicas notice within
BATON_API_KEY_CACHE_SECONDS. Its parts live in sessions.py, user_admin.py and key_admin.py.

Wiring (one TokenCodec shared with the authenticator, so both use the same key):

    tokens = TokenCodec.from_config(config.auth)
    audit = AuditLog(store); await audit.start()
    authenticator = CachingAuthenticator.from_config(store, config.auth, tokens)
    await authenticator.start()
    manager = AuthManager.from_config(store, config.auth, tokens=tokens, audit=audit, cache=authenticator)
    result = await ensure_bootstrap_admin(manager, <BATON_BOOTSTRAP_ADMIN_API_KEY or None>)
    ...
    await authenticator.close(); await audit.close()      # on shutdown, before the store closes

Servicers pass `actor=Actor(call.principal.id, call.peer, call.request_id)` to the administrative methods.
"""

from __future__ import annotations

from baton.auth.credential_repository import ApiKeyRecord
from baton.auth.interfaces import AuditSink
from baton.auth.key_admin import ApiKeyAdministration
from baton.auth.manager_base import Actor, CredentialCache, TokenGrant, UserChanges
from baton.auth.passwords import Passwords
from baton.auth.repository import UserRecord
from baton.auth.sessions import Sessions
from baton.auth.tokens import TokenCodec
from baton.auth.user_admin import UPDATABLE_PATHS, UserAdministration
from baton.config import AuthConfig
from baton.store import SqlStore

__all__ = [
    "UPDATABLE_PATHS",
    "Actor",
    "ApiKeyRecord",
    "AuthManager",
    "CredentialCache",
    "TokenGrant",
    "UserChanges",
    "UserRecord",
]


class AuthManager(Sessions, UserAdministration, ApiKeyAdministration):
    """Logins and token rotation (Sessions), users (UserAdministration) and API keys (ApiKeyAdministration).

    Constructor: `AuthManager(store, *, tokens, audit, passwords=None, cache=None,
    refresh_token_ttl_seconds=2592000, clock=<utc now>)`.
    """

    @classmethod
    def from_config(
        cls,
        store: SqlStore,
        config: AuthConfig,
        *,
        tokens: TokenCodec,
        audit: AuditSink,
        cache: CredentialCache | None = None,
        passwords: Passwords | None = None,
    ) -> AuthManager:
        """A manager with the configured refresh-token lifetime."""
        return cls(
            store,
            tokens=tokens,
            audit=audit,
            cache=cache,
            passwords=passwords,
            refresh_token_ttl_seconds=config.refresh_token_ttl_seconds,
        )
