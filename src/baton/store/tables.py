"""The schema of the whole domain as SQLAlchemy Core tables, portable between SQLite and PostgreSQL.

Conventions: identifiers are UUIDv7 text (time-ordered, see ids.py); times are timezone-aware UTC; states
are the proto enum names without their prefix ("READY") guarded by CHECK constraints; JSON through
sqlalchemy.JSON; `revision` counts updates and is what etags are made of. Every constraint is named by
`NAMING_CONVENTION`, so migrations are deterministic. migrations/versions/0001_initial.py creates the same
schema explicitly, and a test compares the two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TASK_STATES = ("PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED")
STEP_STATES = ("PENDING", "READY", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "RESOLVED_MANUALLY")
ROLES = ("ADMIN", "OPERATOR", "DEVELOPER", "WORKER", "VIEWER")
PRINCIPAL_KINDS = ("HUMAN", "SERVICE_ACCOUNT")
AUDIT_OUTCOMES = ("ok", "failed", "denied")

ID_LENGTH = 36
NAME_LENGTH = 63


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend; SQLite stores it as UTC text without an offset."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    # On SQLite the text is made and read in one C call each. The generic path (process_bind_param, then the
    # dialect's `%`-format of seven fields; its regex, then process_result_value) was an eighth of the writer's
    # time under load. The text is the same: "YYYY-MM-DD HH:MM:SS.ffffff", the dialect's storage format.

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # A transaction binds its one `now` many times over (each row's create, update and schedule times); the
        # last value and its text are kept, and the same object again gets the same text. The pair is replaced
        # as one tuple, so threads sharing this processor never see a text of another value; and the memo keeps
        # its datetime alive, so an identical id is the identical object.
        last: list[tuple[datetime | None, str | None]] = [(None, None)]

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            seen, text = last[0]
            if value is seen:
                return text
            offset = value.utcoffset()
            if offset is None:
                raise ValueError(f"naive datetime {value!r}: pass a timezone-aware one")
            text = (value.astimezone(UTC) if offset else value).isoformat(" ", "microseconds")[:26]
            last[0] = (value, text)
            return text

        return process

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], datetime | None] | None:
        generic = super().result_processor(dialect, coltype)
        if dialect.name != "sqlite":
            return generic

        # Rows written by one transaction share its `now`, so a read meets the same text again and again: the last
        # text and its value are kept (datetimes are immutable, so one value can go to every row).
        last: list[tuple[Any, datetime | None]] = [(None, None)]

        def process(value: Any) -> datetime | None:
            if value is None:
                return None
            seen, parsed = last[0]
            if value == seen:
                return parsed
            try:
                parsed = _from_text(value)
            except (TypeError, ValueError):  # not the text written above: the dialect's own parsing
                return generic(value) if generic is not None else value
            parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
            last[0] = (value, parsed)
            return parsed

        return process


_from_text = datetime.fromisoformat


def _id(name: str = "id", **kwargs: Any) -> Column[str]:
    return Column(name, String(ID_LENGTH), **kwargs)


def _time(name: str, *, nullable: bool = False) -> Column[datetime]:
    return Column(name, UtcDateTime(), nullable=nullable)


def _counter(name: str, default: int = 0, type_: type[Integer] = Integer) -> Column[int]:
    return Column(name, type_(), nullable=False, server_default=text(str(default)))


def _one_of(column: str, values: Iterable[str], name: str) -> CheckConstraint:
    """`column` holds one of `values` (or NULL). As OR-ed equalities: SQLite checks `IN` with more than two
    constants through an ephemeral index it builds for every statement that writes the column (see migration
    0002_checks_without_in_lists)."""
    allowed = " OR ".join(f"{column} = '{value}'" for value in values)
    return CheckConstraint(allowed, name=name)


metadata = MetaData(naming_convention=NAMING_CONVENTION)

namespaces = Table(
    "namespaces",
    metadata,
    Column("name", String(NAME_LENGTH), primary_key=True),
    _time("create_time"),
)

handlers = Table(
    "handlers",
    metadata,
    _id(primary_key=True),
    Column("namespace", String(NAME_LENGTH), ForeignKey("namespaces.name"), nullable=False),
    Column("name", String(NAME_LENGTH), nullable=False),
    Column("version", String(64), nullable=False),
    Column("version_major", Integer(), nullable=False),
    Column("version_minor", Integer(), nullable=False),
    Column("version_patch", Integer(), nullable=False),
    Column("description", Text(), nullable=False),
    Column("definition", JSON(), nullable=False),
    Column("definition_digest", String(64), nullable=False),
    _time("create_time"),
    UniqueConstraint("namespace", "name", "version"),
    Index("ix_handlers_latest", "namespace", "name", "version_major", "version_minor", "version_patch"),
)

handler_steps = Table(
    "handler_steps",
    metadata,
    _id("handler_id", nullable=False),
    Column("name", String(NAME_LENGTH), nullable=False),
    Column("position", Integer(), nullable=False),
    Column("step_handler", String(128), nullable=False),
    Column("depends_on", JSON(), nullable=False),
    Column("retry_policy", JSON(), nullable=False),
    Column("lease_timeout_seconds", Float(), nullable=True),
    _counter("priority"),
    Column("description", Text(), nullable=False),
    PrimaryKeyConstraint("handler_id", "name"),
    ForeignKeyConstraint(["handler_id"], ["handlers.id"], ondelete="CASCADE"),
)

tasks = Table(
    "tasks",
    metadata,
    _id(primary_key=True),
    Column("namespace", String(NAME_LENGTH), nullable=False),
    Column("handler_name", String(NAME_LENGTH), nullable=False),
    Column("handler_version", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("context", JSON(), nullable=False),
    Column("tags", JSON(), nullable=False),
    _counter("priority"),
    Column("correlation_id", String(128), nullable=False),
    Column("request_id", String(128), nullable=True),
    Column("creator", String(128), nullable=False),
    Column("request_hash", String(64), nullable=True),
    Column("trace_context", JSON(), nullable=False),
    _counter("revision", 1),
    _counter("last_event_sequence", 0, BigInteger),
    _time("create_time"),
    _time("update_time"),
    _time("complete_time", nullable=True),
    ForeignKeyConstraint(
        ["namespace", "handler_name", "handler_version"],
        ["handlers.namespace", "handlers.name", "handlers.version"],
    ),
    _one_of("state", TASK_STATES, "state"),
    CheckConstraint("priority BETWEEN -1000 AND 1000", name="priority"),
    # Newest first pages scan this backwards: ORDER BY create_time DESC, id DESC.
    Index("ix_tasks_namespace_create_time", "namespace", "create_time", "id"),
    Index("ix_tasks_namespace_state", "namespace", "state", "create_time"),
    Index("ix_tasks_namespace_handler", "namespace", "handler_name", "create_time"),
    # AIP-155: one task per (namespace, caller, request_id); tasks without a request_id stay out of the index.
    Index(
        "ux_tasks_request_id",
        "namespace",
        "creator",
        "request_id",
        unique=True,
        sqlite_where=text("request_id IS NOT NULL"),
        postgresql_where=text("request_id IS NOT NULL"),
    ),
)

task_tags = Table(
    "task_tags",
    metadata,
    _id("task_id", nullable=False),
    Column("tag", String(64), nullable=False),
    PrimaryKeyConstraint("task_id", "tag"),
    ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
    Index("ix_task_tags_tag", "tag", "task_id"),
)

steps = Table(
    "steps",
    metadata,
    _id(primary_key=True),
    _id("task_id", nullable=False),
    # The task's namespace, copied so that claiming ready steps needs no join.
    Column("namespace", String(NAME_LENGTH), nullable=False),
    Column("name", String(NAME_LENGTH), nullable=False),
    Column("position", Integer(), nullable=False),
    Column("step_handler", String(128), nullable=False),
    Column("state", String(20), nullable=False),
    _counter("attempts"),
    Column("max_attempts", Integer(), nullable=False),
    Column("retry_policy", JSON(), nullable=False),
    Column("lease_timeout_seconds", Float(), nullable=False),
    _counter("priority"),
    _counter("fencing_token", 0, BigInteger),
    Column("worker_id", String(128), nullable=True),
    _time("lease_expire_time", nullable=True),
    _time("next_attempt_at", nullable=True),
    _time("ready_time", nullable=True),
    _time("start_time", nullable=True),
    _time("complete_time", nullable=True),
    Column("result", JSON(none_as_null=True), nullable=True),
    Column("last_error", JSON(none_as_null=True), nullable=True),
    _counter("remaining_dependencies"),
    ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
    UniqueConstraint("task_id", "name"),
    _one_of("state", STEP_STATES, "state"),
    Index("ix_steps_claim", "namespace", "step_handler", "state", "next_attempt_at", "priority"),
    Index("ix_steps_lease_expiry", "state", "lease_expire_time"),
)

step_dependencies = Table(
    "step_dependencies",
    metadata,
    _id("task_id", nullable=False),
    _id("step_id", nullable=False),
    _id("depends_on_step_id", nullable=False),
    PrimaryKeyConstraint("step_id", "depends_on_step_id"),
    ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
    ForeignKeyConstraint(["step_id"], ["steps.id"], ondelete="CASCADE"),
    ForeignKeyConstraint(["depends_on_step_id"], ["steps.id"], ondelete="CASCADE"),
    Index("ix_step_dependencies_depends_on", "depends_on_step_id"),
    Index("ix_step_dependencies_task_id", "task_id"),
)

task_events = Table(
    "task_events",
    metadata,
    _id("task_id", nullable=False),
    Column("sequence", BigInteger(), nullable=False),
    Column("step_name", String(NAME_LENGTH), nullable=True),
    Column("previous_task_state", String(16), nullable=True),
    Column("task_state", String(16), nullable=True),
    Column("previous_step_state", String(20), nullable=True),
    Column("step_state", String(20), nullable=True),
    Column("attempt", Integer(), nullable=True),
    Column("reason", Text(), nullable=False),
    Column("actor", String(128), nullable=False),
    _time("create_time"),
    PrimaryKeyConstraint("task_id", "sequence"),
    ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
    _one_of("previous_task_state", TASK_STATES, "previous_task_state"),
    _one_of("task_state", TASK_STATES, "task_state"),
    _one_of("previous_step_state", STEP_STATES, "previous_step_state"),
    _one_of("step_state", STEP_STATES, "step_state"),
)

workers = Table(
    "workers",
    metadata,
    Column("namespace", String(NAME_LENGTH), nullable=False),
    Column("worker_id", String(128), nullable=False),
    Column("step_handlers", JSON(), nullable=False),
    _time("first_seen_time"),
    _time("last_seen_time"),
    PrimaryKeyConstraint("namespace", "worker_id"),
    Index("ix_workers_last_seen_time", "last_seen_time"),
)

principals = Table(
    "principals",
    metadata,
    _id(primary_key=True),
    Column("username", String(64), nullable=False),
    Column("display_name", String(256), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("disabled", Boolean(), nullable=False, server_default=false()),
    _counter("revision", 1),
    _time("create_time"),
    _time("update_time"),
    UniqueConstraint("username"),
    _one_of("kind", PRINCIPAL_KINDS, "kind"),
)

password_hashes = Table(
    "password_hashes",
    metadata,
    _id("principal_id", primary_key=True),
    Column("password_hash", Text(), nullable=False),
    _time("update_time"),
    ForeignKeyConstraint(["principal_id"], ["principals.id"], ondelete="CASCADE"),
)

role_bindings = Table(
    "role_bindings",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    _id("principal_id", nullable=False),
    Column("role", String(16), nullable=False),
    # NULL grants the role in every namespace.
    Column("namespace", String(NAME_LENGTH), nullable=True),
    _time("create_time"),
    ForeignKeyConstraint(["principal_id"], ["principals.id"], ondelete="CASCADE"),
    UniqueConstraint("principal_id", "role", "namespace"),
    _one_of("role", ROLES, "role"),
)

api_keys = Table(
    "api_keys",
    metadata,
    _id(primary_key=True),
    _id("principal_id", nullable=False),
    Column("display_name", String(256), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(128), nullable=False),
    _time("create_time"),
    _time("expire_time", nullable=True),
    _time("last_used_time", nullable=True),
    _time("revoke_time", nullable=True),
    ForeignKeyConstraint(["principal_id"], ["principals.id"], ondelete="CASCADE"),
    UniqueConstraint("key_hash"),
    Index("ix_api_keys_prefix", "prefix"),
    Index("ix_api_keys_principal_id", "principal_id", "create_time"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    _id(primary_key=True),
    _id("principal_id", nullable=False),
    # Every token rotated from one login shares the family; presenting a spent one revokes the family.
    _id("family_id", nullable=False),
    Column("token_hash", String(128), nullable=False),
    _id("parent_id", nullable=True),
    _time("create_time"),
    _time("expire_time"),
    _time("used_time", nullable=True),
    _time("revoke_time", nullable=True),
    ForeignKeyConstraint(["principal_id"], ["principals.id"], ondelete="CASCADE"),
    UniqueConstraint("token_hash"),
    Index("ix_refresh_tokens_family_id", "family_id"),
    Index("ix_refresh_tokens_principal_id", "principal_id"),
)

audit_events = Table(
    "audit_events",
    metadata,
    _id(primary_key=True),
    _time("create_time"),
    Column("action", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    # No foreign key: the audit trail outlives deleted principals.
    _id("principal_id", nullable=True),
    Column("method", String(256), nullable=True),
    Column("peer", String(256), nullable=True),
    Column("request_id", String(128), nullable=True),
    Column("namespace", String(NAME_LENGTH), nullable=True),
    Column("details", JSON(), nullable=False),
    _one_of("outcome", AUDIT_OUTCOMES, "outcome"),
    Index("ix_audit_events_create_time", "create_time"),
    Index("ix_audit_events_action", "action", "create_time"),
    Index("ix_audit_events_principal_id", "principal_id", "create_time"),
)
