"""The handler registry: registered handler versions in the store, with an in-memory cache in front.

Registration validates the whole definition first (baton.domain.handlers), resolves unset step fields from the
engine defaults, and writes the namespace (on first use), the handler row and its step rows in one transaction,
so nothing is ever half-registered. A version is immutable: the same definition again (equal digest) returns the
stored handler, a different one is ALREADY_EXISTS. Two registrations of one version at once (two replicas, or
two tasks on PostgreSQL) meet at the unique constraint; the loser re-reads and compares digests.

Cache: versions by (namespace, name, version), which never change, and the latest version of each name for
`latest_ttl` seconds (5 by default), in one LRU bounded to `cache_entries`. Registration drops the name's latest
entry on this replica at once; a version registered on another replica becomes the latest here within
`latest_ttl`. Nothing is cached for a miss, so a version registered elsewhere is found at once by its number.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import and_
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from baton.config import EngineConfig
from baton.domain.backoff import RetryDefaults
from baton.domain.handlers import (
    HandlerDefaults,
    HandlerDefinition,
    VersionKey,
    canonical_definition,
    definition_digest,
    parse_semver,
    validate_handler,
)
from baton.engine.handler_sql import (
    NamespaceSummary,
    RegisteredHandler,
    definition_from_json,
    get_latest,
    get_version,
    insert_handler,
    latest_page,
    namespace_page,
    version_page,
)
from baton.errors import AlreadyExists, FieldViolation, InvalidArgument, NotFound, ResourceRef
from baton.pagination import decode_token, encode_token
from baton.pagination import page_size as effective_page_size
from baton.store import SqlStore
from baton.store.tables import handlers

__all__ = ["HandlerCache", "HandlerRegistry", "NamespaceSummary", "RegisteredHandler", "handler_defaults"]

T = TypeVar("T")
#: ResourceInfo.resource_type of a handler.
HANDLER_RESOURCE_TYPE = "baton.v1.Handler"
#: ErrorInfo.reason of a version registered with another definition.
VERSION_EXISTS = "HANDLER_VERSION_EXISTS"


def handler_defaults(config: EngineConfig) -> HandlerDefaults:
    """The engine's defaults for unset step fields."""
    retry = RetryDefaults(
        max_attempts=config.default_max_attempts,
        initial_backoff=config.default_initial_backoff_seconds,
        backoff_coefficient=config.default_backoff_coefficient,
        max_backoff=config.default_max_backoff_seconds,
    )
    return HandlerDefaults(retry=retry, lease_timeout=config.default_lease_timeout_seconds)


def resource_name(namespace: str, name: str, version: str = "") -> str:
    """The resource name of a handler version (of the handler when `version` is "")."""
    handler = f"namespaces/{namespace}/handlers/{name}"
    return f"{handler}/versions/{version}" if version else handler


class HandlerCache:
    """A bounded LRU of handler versions; entries under version "" are a name's latest and expire."""

    def __init__(self, max_entries: int, latest_ttl: float, clock: Callable[[], float]) -> None:
        self._entries: OrderedDict[tuple[str, str, str], tuple[RegisteredHandler, float | None]] = OrderedDict()
        self._max_entries = max_entries
        self._latest_ttl = latest_ttl
        self._clock = clock

    def get(self, namespace: str, name: str, version: str) -> RegisteredHandler | None:
        """The cached version ("" for the latest one), or None."""
        key = (namespace, name, version)
        entry = self._entries.get(key)
        if entry is None:
            return None
        handler, expires = entry
        if expires is not None and self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return handler

    def put(self, handler: RegisteredHandler, *, latest: bool = False) -> None:
        """Cache a version, or (`latest`) the latest version of its name."""
        d = handler.definition
        key = (d.namespace, d.name, "" if latest else d.version)
        self._entries[key] = (handler, self._clock() + self._latest_ttl if latest else None)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def forget_latest(self, namespace: str, name: str) -> None:
        """Drop the latest entry of a name."""
        self._entries.pop((namespace, name, ""), None)

    def __len__(self) -> int:
        return len(self._entries)


class HandlerRegistry:
    """Registers, reads and lists handler versions and the namespaces holding them."""

    def __init__(
        self,
        store: SqlStore,
        defaults: HandlerDefaults,
        *,
        cache_entries: int = 10_000,
        latest_ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.defaults = defaults
        self.cache = HandlerCache(cache_entries, latest_ttl, clock)

    @classmethod
    def from_config(cls, store: SqlStore, config: EngineConfig) -> HandlerRegistry:
        """A registry resolving unset step fields from the engine configuration."""
        return cls(store, handler_defaults(config))

    async def register(self, definition: HandlerDefinition) -> RegisteredHandler:
        """Validate and store a version (INVALID_ARGUMENT naming every bad field); the stored version when it is
        equal, ALREADY_EXISTS (HANDLER_VERSION_EXISTS) when it differs."""
        violations = validate_handler(definition, self.defaults)
        if violations:
            raise _invalid(violations)
        canonical = canonical_definition(definition, self.defaults)
        digest = definition_digest(definition, self.defaults)
        candidate = RegisteredHandler(definition_from_json(canonical), datetime.now(UTC), digest)
        namespace, name, version = definition.namespace, definition.name, definition.version
        try:
            stored = await self._store.run_in_transaction(lambda c: insert_handler(c, candidate, canonical))
        except IntegrityError:  # a concurrent registration of the version won
            raced = await self._read(lambda c: get_version(c, namespace, name, version))
            if raced is None:
                raise
            stored = raced
        _check_same(stored, digest)
        self.cache.put(stored)
        self.cache.forget_latest(namespace, name)
        return stored

    async def get(self, namespace: str, name: str, version: str = "") -> RegisteredHandler:
        """One version, or the latest by SemVer precedence for version ""; NOT_FOUND when there is none."""
        cached = self.cache.get(namespace, name, version)
        if cached is not None:
            return cached
        if version:
            found = await self._read(lambda c: get_version(c, namespace, name, version))
        else:
            found = await self._read(lambda c: get_latest(c, namespace, name))
        if found is None:
            raise _not_found(namespace, name, version)
        self.cache.put(found, latest=not version)
        return found

    async def list_handlers(
        self, namespace: str, *, page_size: int = 0, page_token: str = "", name: str = "", latest_only: bool = False
    ) -> tuple[list[RegisteredHandler], str]:
        """A page of versions by name then SemVer precedence (each name's latest only, when `latest_only`) and the
        next page's token ("" on the last page). An unknown namespace has no handlers."""
        limit = effective_page_size(page_size)
        bound = {"namespace": namespace, "name": name, "latest_only": latest_only}
        position = decode_token(page_token, bound)
        where = and_(handlers.c.namespace == namespace, *([handlers.c.name == name] if name else []))
        if latest_only:
            after_name = _position_field(position, "n")
            page, more = await self._read(lambda c: latest_page(c, where, after_name, limit))
        else:
            after = None if position is None else _version_position(position)
            page, more = await self._read(lambda c: version_page(c, where, after, limit))
        if not more:
            return page, ""
        last = page[-1].definition
        next_position = {"n": last.name} if latest_only else {"n": last.name, "v": last.version}
        return page, encode_token(next_position, bound)

    async def list_namespaces(
        self, *, readable: frozenset[str] | None, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[NamespaceSummary], str]:
        """A page of the namespaces holding handlers, by name, limited to `readable` (None: every namespace),
        and the next page's token."""
        limit = effective_page_size(page_size)
        bound = {"list": "namespaces"}
        after = _position_field(decode_token(page_token, bound), "n")
        if readable is not None and not readable:
            return [], ""
        page, more = await self._read(lambda c: namespace_page(c, readable, after, limit))
        return page, encode_token({"n": page[-1].name}, bound) if more else ""

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` on one connection, without taking SQLite's write lock."""
        return await self._store.run_read(fn)


def _invalid(violations: list[FieldViolation]) -> InvalidArgument:
    """INVALID_ARGUMENT with every violation, its message naming the first (a cycle, say) for people reading it."""
    first = violations[0]
    more = len(violations) - 1
    rest = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return InvalidArgument(
        f"invalid handler definition: {first.field}: {first.description}{rest}", field_violations=violations
    )


def _check_same(stored: RegisteredHandler, digest: str) -> None:
    if stored.definition_digest == digest:
        return
    d = stored.definition
    raise AlreadyExists(
        f"handler {d.namespace}/{d.name} version {d.version} is registered with another definition; "
        "versions are immutable: register a new version",
        reason=VERSION_EXISTS,
        metadata={"namespace": d.namespace, "name": d.name, "version": d.version},
        resource=ResourceRef(HANDLER_RESOURCE_TYPE, resource_name(d.namespace, d.name, d.version)),
    )


def _not_found(namespace: str, name: str, version: str) -> NotFound:
    what = f"version {version}" if version else "registered version"
    return NotFound(
        f"handler {namespace}/{name} has no {what}",
        reason="HANDLER_NOT_FOUND",
        metadata={"namespace": namespace, "name": name, "version": version},
        resource=ResourceRef(HANDLER_RESOURCE_TYPE, resource_name(namespace, name, version)),
    )


def _bad_token() -> InvalidArgument:
    return InvalidArgument(
        "page_token is not a token this server issued",
        field_violations=[FieldViolation("page_token", "malformed page token")],
    )


def _text(position: dict[str, Any], field: str) -> str:
    value = position.get(field)
    if not isinstance(value, str):
        raise _bad_token()
    return value


def _position_field(position: dict[str, Any] | None, field: str) -> str | None:
    return None if position is None else _text(position, field)


def _version_position(position: dict[str, Any]) -> tuple[str, VersionKey]:
    try:
        return _text(position, "n"), parse_semver(_text(position, "v"))
    except ValueError:
        raise _bad_token() from None
