"""SQL of the handler registry: records, the registration transaction, version lookups and keyset pages.

Every function here is synchronous and takes a Connection, so the registry runs a whole read or write in one hop
(`SqlStore.run_in_transaction`, or a plain connection for reads). SemVer precedence is not SQL ordering
(`2.0.0-rc.1` < `2.0.0`): queries order by (name, major, minor, patch), and the few versions that share those
numbers (pre-releases) are ordered here with `parse_semver`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, func, insert, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from baton.domain.backoff import RetryPolicy
from baton.domain.handlers import HandlerDefinition, StepDefinition, VersionKey, parse_semver
from baton.store import new_id
from baton.store.tables import handler_steps, handlers, namespaces

_h = handlers.c
_ORDER = (_h.name, _h.version_major, _h.version_minor, _h.version_patch)


@dataclass(frozen=True, slots=True)
class RegisteredHandler:
    """A stored handler version: its definition with defaults resolved, when it was registered, its digest."""

    definition: HandlerDefinition
    create_time: datetime
    definition_digest: str

    @property
    def sort_key(self) -> tuple[str, VersionKey]:
        """Position in list order: by name, then SemVer precedence."""
        return self.definition.name, parse_semver(self.definition.version)


@dataclass(frozen=True, slots=True)
class NamespaceSummary:
    """A namespace with the number of handler versions in it and the time of its first registration."""

    name: str
    handler_count: int
    create_time: datetime


def definition_from_json(data: dict[str, Any]) -> HandlerDefinition:
    """A definition from its canonical JSON (`baton.domain.handlers.canonical_definition`)."""
    steps = tuple(
        StepDefinition(
            name=step["name"],
            step_handler=step["step_handler"],
            depends_on=tuple(step["depends_on"]),
            retry_policy=_retry_policy_from_json(step["retry_policy"]),
            lease_timeout=step["lease_timeout"],
            priority=step["priority"],
            description=step["description"],
        )
        for step in data["steps"]
    )
    return HandlerDefinition(data["namespace"], data["name"], data["version"], steps, data["description"])


def _retry_policy_from_json(data: dict[str, Any]) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=data["max_attempts"],
        initial_backoff=data["initial_backoff"],
        backoff_coefficient=data["backoff_coefficient"],
        max_backoff=data["max_backoff"],
        jitter=data["jitter"],
        non_retryable_error_types=frozenset(data["non_retryable_error_types"]),
    )


def _from_row(row: Row[Any]) -> RegisteredHandler:
    return RegisteredHandler(definition_from_json(row.definition), row.create_time, row.definition_digest)


def insert_handler(connection: Connection, handler: RegisteredHandler, canonical: dict[str, Any]) -> RegisteredHandler:
    """Store a version with its steps, creating its namespace on first use; the stored version instead when one
    exists (the caller compares digests). Raises IntegrityError when a concurrent transaction stored it first."""
    d = handler.definition
    existing = get_version(connection, d.namespace, d.name, d.version)
    if existing is not None:
        return existing
    dialect = sqlite if connection.dialect.name == "sqlite" else postgresql
    connection.execute(
        dialect.insert(namespaces)
        .values(name=d.namespace, create_time=handler.create_time)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    handler_id = new_id()
    major, minor, patch = parse_semver(d.version)[:3]
    connection.execute(
        insert(handlers).values(
            id=handler_id,
            namespace=d.namespace,
            name=d.name,
            version=d.version,
            version_major=major,
            version_minor=minor,
            version_patch=patch,
            description=d.description,
            definition=canonical,
            definition_digest=handler.definition_digest,
            create_time=handler.create_time,
        )
    )
    step_rows = [
        {
            "handler_id": handler_id,
            "name": step["name"],
            "position": position,
            "step_handler": step["step_handler"],
            "depends_on": step["depends_on"],
            "retry_policy": step["retry_policy"],
            "lease_timeout_seconds": step["lease_timeout"],
            "priority": step["priority"],
            "description": step["description"],
        }
        for position, step in enumerate(canonical["steps"])
    ]
    connection.execute(insert(handler_steps), step_rows)
    return handler


def get_version(connection: Connection, namespace: str, name: str, version: str) -> RegisteredHandler | None:
    """One version, or None."""
    query = select(handlers).where(_h.namespace == namespace, _h.name == name, _h.version == version)
    row = connection.execute(query).first()
    return None if row is None else _from_row(row)


def get_latest(connection: Connection, namespace: str, name: str) -> RegisteredHandler | None:
    """The highest version of a handler by SemVer precedence, or None."""
    return _latest(connection, and_(_h.namespace == namespace, _h.name == name)).get(name)


def _latest(connection: Connection, where: ColumnElement[bool]) -> dict[str, RegisteredHandler]:
    """The latest version of each name matching `where`: of the versions ranked first by (major, minor, patch),
    the highest by SemVer precedence (a release above its pre-releases)."""
    rank = func.rank().over(partition_by=_h.name, order_by=[column.desc() for column in _ORDER[1:]])
    ranked = select(handlers, rank.label("rank")).where(where).subquery()
    rows = connection.execute(select(ranked).where(ranked.c.rank == 1)).all()
    best: dict[str, Row[Any]] = {}
    for row in rows:
        current = best.get(row.name)
        if current is None or parse_semver(row.version) > parse_semver(current.version):
            best[row.name] = row
    return {name: _from_row(row) for name, row in best.items()}


def latest_page(
    connection: Connection, where: ColumnElement[bool], after_name: str | None, limit: int
) -> tuple[list[RegisteredHandler], bool]:
    """The latest version of up to `limit` names after `after_name`, by name, and whether more names follow."""
    names_query = select(_h.name).where(where).distinct().order_by(_h.name).limit(limit + 1)
    if after_name is not None:
        names_query = names_query.where(_h.name > after_name)
    names = list(connection.execute(names_query).scalars())
    page_names = names[:limit]
    if not page_names:
        return [], False
    latest = _latest(connection, and_(where, _h.name.in_(page_names)))
    return [latest[name] for name in page_names], len(names) > limit


def version_page(
    connection: Connection, where: ColumnElement[bool], after: tuple[str, VersionKey] | None, limit: int
) -> tuple[list[RegisteredHandler], bool]:
    """Up to `limit` versions after `after` in (name, SemVer) order, and whether more follow.

    Each fetch is completed with the rest of its last (name, major, minor, patch) group so that the group can be
    ordered here; versions of the first group at or before `after` are skipped. A fetch that yields too few new
    versions (a long run of pre-releases) continues after its last, complete, group.
    """
    found: list[RegisteredHandler] = []
    group_done = False  # whether every version of `after`'s group has been seen
    while True:
        query = select(handlers).where(where).order_by(*_ORDER).limit(limit + 1)
        if after is not None:
            name, key = after
            position, start = tuple_(*_ORDER), tuple_(name, *key[:3])
            query = query.where(position > start if group_done else position >= start)
        rows = {row.id: row for row in connection.execute(query)}
        full = len(rows) == limit + 1
        if full:
            last = list(rows.values())[-1]
            same_group = [column == last._mapping[column.name] for column in _ORDER]
            rows.update((row.id, row) for row in connection.execute(select(handlers).where(where, *same_group)))
        batch = sorted((_from_row(row) for row in rows.values()), key=lambda h: h.sort_key)
        found.extend(h for h in batch if after is None or h.sort_key > after)
        if len(found) > limit or not full:
            return found[:limit], len(found) > limit
        after, group_done = batch[-1].sort_key, True


def namespace_page(
    connection: Connection, readable: frozenset[str] | None, after: str | None, limit: int
) -> tuple[list[NamespaceSummary], bool]:
    """Up to `limit` namespaces holding handlers after `after`, by name, among `readable` (None: all), and
    whether more follow."""
    query = (
        select(namespaces.c.name, namespaces.c.create_time, func.count(_h.id))
        .join(handlers, _h.namespace == namespaces.c.name)
        .group_by(namespaces.c.name, namespaces.c.create_time)
        .order_by(namespaces.c.name)
        .limit(limit + 1)
    )
    if readable is not None:
        query = query.where(namespaces.c.name.in_(sorted(readable)))
    if after is not None:
        query = query.where(namespaces.c.name > after)
    found = [NamespaceSummary(name, int(count), create_time) for name, create_time, count in connection.execute(query)]
    return found[:limit], len(found) > limit
