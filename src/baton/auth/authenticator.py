"""Who is calling: API keys and bearer JWTs to Principals, with the database off the hot path.

A verified API key is cached (by the SHA-256 of the presented key, bounded LRU) for `cache_seconds`; so are
refusals, so a client stuck on a revoked key does not reach the database on every call. Verified JWTs are
cached until they expire and principals (for the JWT path) for `cache_seconds`. `invalidate_key()` and
`invalidate_principal()` drop entries at once on this replica; other replicas notice a revocation, a disabled
principal or a role change within `cache_seconds` (BATON_API_KEY_CACHE_SECONDS). When a key was last used is
kept in memory and written at most once per `usage_flush_seconds` per key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import NoReturn, TypeVar

import structlog

from baton.auth.api_keys import UsageRecorder, is_plausible_key, parse_key_id
from baton.auth.credential_repository import ApiKeyRepository
from baton.auth.principal import Principal
from baton.auth.repository import UserRecord, UserRepository
from baton.auth.tokens import TokenClaims, TokenCodec
from baton.config import AuthConfig
from baton.errors import Unauthenticated
from baton.store import SqlStore

log = structlog.get_logger(__name__)
V = TypeVar("V")

DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_USAGE_FLUSH_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class _KeyEntry:
    principal: Principal
    key_id: str
    expires_at: float | None  # wall-clock seconds
    cached_at: float  # monotonic seconds


@dataclass(frozen=True, slots=True)
class _Refusal:
    reason: str
    message: str
    principal_id: str | None
    key_id: str | None
    cached_at: float


@dataclass(frozen=True, slots=True)
class _PrincipalEntry:
    user: UserRecord | None
    principal: Principal | None
    cached_at: float


def _remember(cache: OrderedDict[str, V], key: str, value: V, max_entries: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > max_entries:
        cache.popitem(last=False)


def user_principal(user: UserRecord, auth_method: str = "", credential_id: str = "") -> Principal:
    """The Principal for a user record, its permissions resolved."""
    return Principal.build(
        id=user.id,
        username=user.username,
        kind=user.kind,
        bindings=user.role_bindings,
        auth_method=auth_method,
        credential_id=credential_id,
        display_name=user.display_name,
    )


class CachingAuthenticator:
    """The Authenticator over the store: `x-api-key` or `authorization: Bearer <jwt>` (exactly one)."""

    def __init__(
        self,
        store: SqlStore,
        tokens: TokenCodec,
        *,
        cache_seconds: float = 30.0,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        usage_flush_seconds: float = DEFAULT_USAGE_FLUSH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys_repository = ApiKeyRepository(store)
        self._users = UserRepository(store)
        self._tokens = tokens
        self._ttl = cache_seconds
        self._max_entries = max_entries
        self._usage_flush_seconds = usage_flush_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._keys: OrderedDict[str, _KeyEntry] = OrderedDict()
        self._refusals: OrderedDict[str, _Refusal] = OrderedDict()
        self._verified: OrderedDict[str, TokenClaims] = OrderedDict()
        self._principals: OrderedDict[str, _PrincipalEntry] = OrderedDict()
        self.usage = UsageRecorder()
        # Bumped by every invalidation: a lookup that overlapped one must not cache what it read before it.
        self._invalidations = 0
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, store: SqlStore, config: AuthConfig, tokens: TokenCodec) -> CachingAuthenticator:
        """An authenticator caching for BATON_API_KEY_CACHE_SECONDS."""
        return cls(store, tokens, cache_seconds=config.api_key_cache_seconds)

    async def start(self) -> None:
        """Start writing recorded key uses every `usage_flush_seconds`."""
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_periodically(), name="baton-api-key-usage")

    async def close(self) -> None:
        """Stop the background writer and write the uses still pending."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        await self.flush_usage()

    async def flush_usage(self) -> None:
        """Write every pending last-used time now (one UPDATE per key); on failure they are kept for later."""
        pending = self.usage.drain()
        if not pending:
            return
        try:
            await self._keys_repository.record_use(pending)
        except asyncio.CancelledError:
            self.usage.restore(pending)
            raise
        except Exception:  # last-used times are best effort; kept and retried next time
            log.warning("api_key_usage_write_failed", keys=len(pending), exc_info=True)
            self.usage.restore(pending)

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._usage_flush_seconds)
            await self.flush_usage()

    def invalidate_key(self, key_id: str) -> None:
        """Forget a key at once on this replica (after a revocation); other replicas within `cache_seconds`."""
        self._invalidations += 1
        for digest in [d for d, entry in self._keys.items() if entry.key_id == key_id]:
            del self._keys[digest]
        for digest in [d for d, refusal in self._refusals.items() if refusal.key_id == key_id]:
            del self._refusals[digest]

    def invalidate_principal(self, principal_id: str) -> None:
        """Forget everything cached about a principal at once on this replica (after it was disabled, deleted
        or had its roles changed); other replicas notice within `cache_seconds`."""
        self._invalidations += 1
        for digest in [d for d, entry in self._keys.items() if entry.principal.id == principal_id]:
            del self._keys[digest]
        for digest in [d for d, refusal in self._refusals.items() if refusal.principal_id == principal_id]:
            del self._refusals[digest]
        self._principals.pop(principal_id, None)

    def cached(self, metadata: Mapping[str, str]) -> Principal | None:
        """The hot path: the principal of an API key verified within `cache_seconds` (a dictionary hit, no
        coroutine, no database); None when `authenticate` must decide."""
        api_key = metadata.get("x-api-key")
        if api_key is None or "authorization" in metadata:
            return None
        return self._cached_key(hashlib.sha256(api_key.encode()).hexdigest())

    def _cached_key(self, digest: str) -> Principal | None:
        """The principal of the key with this digest when it was verified within `cache_seconds` and has not
        expired since (its use recorded), else None."""
        entry = self._keys.get(digest)
        if entry is None or self._clock() - entry.cached_at >= self._ttl:
            return None
        now = self._wall_clock()
        if entry.expires_at is not None and now >= entry.expires_at:
            return None
        self._keys.move_to_end(digest)
        self.usage.record(entry.key_id, now)
        return entry.principal

    async def authenticate(self, metadata: Mapping[str, str]) -> Principal | None:
        """The caller's Principal; None without credentials; Unauthenticated for bad ones or for both kinds."""
        api_key = metadata.get("x-api-key")
        authorization = metadata.get("authorization")
        if api_key is None:
            return None if authorization is None else await self._by_bearer(authorization)
        if authorization is not None:
            raise Unauthenticated(
                "send one credential: either x-api-key or authorization, not both", reason="CREDENTIALS_CONFLICT"
            )
        digest = hashlib.sha256(api_key.encode()).hexdigest()
        principal = self._cached_key(digest)
        if principal is not None:
            return principal
        return await self._by_api_key(api_key, digest)

    async def _by_api_key(self, api_key: str, digest: str) -> Principal:
        self._keys.pop(digest, None)
        refusal = self._refusals.get(digest)
        if refusal is not None:
            if self._clock() - refusal.cached_at < self._ttl:
                raise Unauthenticated(refusal.message, reason=refusal.reason)
            del self._refusals[digest]
        if not is_plausible_key(api_key):
            raise Unauthenticated("the API key is malformed", reason="API_KEY_INVALID")
        generation = self._invalidations
        match = await self._keys_repository.find(parse_key_id(api_key), digest)
        now, cacheable = self._wall_clock(), self._ttl > 0 and generation == self._invalidations
        if match is None:
            self._refuse(digest, "API_KEY_INVALID", "the API key is not valid", None, None, cacheable)
        key, user = match.key, match.user
        expires_at = None if key.expire_time is None else key.expire_time.timestamp()
        if key.revoke_time is not None:
            self._refuse(digest, "API_KEY_REVOKED", "the API key was revoked", user.id, key.id, cacheable)
        if expires_at is not None and now >= expires_at:
            self._refuse(digest, "API_KEY_EXPIRED", "the API key has expired", user.id, key.id, cacheable)
        if user.disabled:
            message = "the API key belongs to a disabled user"
            self._refuse(digest, "PRINCIPAL_DISABLED", message, user.id, key.id, cacheable)
        principal = user_principal(user, "api_key", key.id)
        if cacheable:
            _remember(self._keys, digest, _KeyEntry(principal, key.id, expires_at, self._clock()), self._max_entries)
        self.usage.record(key.id, now)
        return principal

    def _refuse(
        self, digest: str, reason: str, message: str, principal_id: str | None, key_id: str | None, cacheable: bool
    ) -> NoReturn:
        if cacheable:
            refusal = _Refusal(reason, message, principal_id, key_id, self._clock())
            _remember(self._refusals, digest, refusal, self._max_entries)
        raise Unauthenticated(message, reason=reason)

    async def _by_bearer(self, authorization: str) -> Principal:
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("authorization metadata must be `Bearer <token>`", reason="TOKEN_INVALID")
        digest = hashlib.sha256(token.encode()).hexdigest()
        claims = self._verified.get(digest)
        if claims is not None and self._wall_clock() < claims.expires_at:
            self._verified.move_to_end(digest)
        else:
            claims = self._tokens.verify(token)
            _remember(self._verified, digest, claims, self._max_entries)
        entry = await self._principal(claims.subject)
        if entry.user is None or entry.principal is None:
            raise Unauthenticated("the access token's user no longer exists", reason="TOKEN_INVALID")
        if entry.user.disabled:
            raise Unauthenticated("the access token's user is disabled", reason="PRINCIPAL_DISABLED")
        if claims.version != entry.user.revision:
            raise Unauthenticated(
                "the access token predates a change to its user; get a new one with RefreshToken or Login",
                reason="TOKEN_INVALID",
            )
        return replace(entry.principal, auth_method="jwt", credential_id=claims.jti)

    async def _principal(self, principal_id: str) -> _PrincipalEntry:
        entry = self._principals.get(principal_id)
        if entry is not None and self._clock() - entry.cached_at < self._ttl:
            return entry
        generation = self._invalidations
        user = await self._users.get(principal_id)
        entry = _PrincipalEntry(user, None if user is None else user_principal(user), self._clock())
        if self._ttl > 0 and generation == self._invalidations:
            _remember(self._principals, principal_id, entry, self._max_entries)
        return entry
