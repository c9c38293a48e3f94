"""The initial schema: namespaces, handlers, tasks, steps, events, workers, principals and credentials, audit.

Revision ID: 0001_initial
Revises:
Create Date: 2026-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TASK_STATES = "'PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED'"
STEP_STATES = "'PENDING', 'READY', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED', 'RESOLVED_MANUALLY'"


def _id(name: str = "id", *, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(36), nullable=nullable)


def _time(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _counter(name: str, default: int = 0, type_: type[sa.Integer] = sa.Integer) -> sa.Column[int]:
    return sa.Column(name, type_(), nullable=False, server_default=sa.text(str(default)))


def upgrade() -> None:
    """Create every table, constraint and index."""
    op.create_table(
        "namespaces",
        sa.Column("name", sa.String(63), nullable=False),
        _time("create_time"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_namespaces")),
    )
    op.create_table(
        "handlers",
        _id(),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("version_major", sa.Integer(), nullable=False),
        sa.Column("version_minor", sa.Integer(), nullable=False),
        sa.Column("version_patch", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("definition_digest", sa.String(64), nullable=False),
        _time("create_time"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handlers")),
        sa.ForeignKeyConstraint(["namespace"], ["namespaces.name"], name=op.f("fk_handlers_namespace_namespaces")),
        sa.UniqueConstraint("namespace", "name", "version", name=op.f("uq_handlers_namespace_name_version")),
    )
    op.create_index(
        op.f("ix_handlers_latest"),
        "handlers",
        ["namespace", "name", "version_major", "version_minor", "version_patch"],
    )
    op.create_table(
        "handler_steps",
        _id("handler_id"),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("step_handler", sa.String(128), nullable=False),
        sa.Column("depends_on", sa.JSON(), nullable=False),
        sa.Column("retry_policy", sa.JSON(), nullable=False),
        sa.Column("lease_timeout_seconds", sa.Float(), nullable=True),
        _counter("priority"),
        sa.Column("description", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("handler_id", "name", name=op.f("pk_handler_steps")),
        sa.ForeignKeyConstraint(
            ["handler_id"],
            ["handlers.id"],
            name=op.f("fk_handler_steps_handler_id_handlers"),
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "tasks",
        _id(),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("handler_name", sa.String(63), nullable=False),
        sa.Column("handler_version", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        _counter("priority"),
        sa.Column("correlation_id", sa.String(128), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("creator", sa.String(128), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=True),
        sa.Column("trace_context", sa.JSON(), nullable=False),
        _counter("revision", 1),
        _counter("last_event_sequence", 0, sa.BigInteger),
        _time("create_time"),
        _time("update_time"),
        _time("complete_time", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        sa.ForeignKeyConstraint(
            ["namespace", "handler_name", "handler_version"],
            ["handlers.namespace", "handlers.name", "handlers.version"],
            name=op.f("fk_tasks_namespace_handlers"),
        ),
        sa.CheckConstraint(f"state IN ({TASK_STATES})", name=op.f("ck_tasks_state")),
        sa.CheckConstraint("priority BETWEEN -1000 AND 1000", name=op.f("ck_tasks_priority")),
    )
    op.create_index(op.f("ix_tasks_namespace_create_time"), "tasks", ["namespace", "create_time", "id"])
    op.create_index(op.f("ix_tasks_namespace_state"), "tasks", ["namespace", "state", "create_time"])
    op.create_index(op.f("ix_tasks_namespace_handler"), "tasks", ["namespace", "handler_name", "create_time"])
    op.create_index(
        op.f("ux_tasks_request_id"),
        "tasks",
        ["namespace", "creator", "request_id"],
        unique=True,
        sqlite_where=sa.text("request_id IS NOT NULL"),
        postgresql_where=sa.text("request_id IS NOT NULL"),
    )
    op.create_table(
        "task_tags",
        _id("task_id"),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("task_id", "tag", name=op.f("pk_task_tags")),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_task_tags_task_id_tasks"), ondelete="CASCADE"),
    )
    op.create_index(op.f("ix_task_tags_tag"), "task_tags", ["tag", "task_id"])
    op.create_table(
        "steps",
        _id(),
        _id("task_id"),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("step_handler", sa.String(128), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        _counter("attempts"),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("retry_policy", sa.JSON(), nullable=False),
        sa.Column("lease_timeout_seconds", sa.Float(), nullable=False),
        _counter("priority"),
        _counter("fencing_token", 0, sa.BigInteger),
        sa.Column("worker_id", sa.String(128), nullable=True),
        _time("lease_expire_time", nullable=True),
        _time("next_attempt_at", nullable=True),
        _time("ready_time", nullable=True),
        _time("start_time", nullable=True),
        _time("complete_time", nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("last_error", sa.JSON(), nullable=True),
        _counter("remaining_dependencies"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_steps")),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_steps_task_id_tasks"), ondelete="CASCADE"),
        sa.UniqueConstraint("task_id", "name", name=op.f("uq_steps_task_id_name")),
        sa.CheckConstraint(f"state IN ({STEP_STATES})", name=op.f("ck_steps_state")),
    )
    op.create_index(
        op.f("ix_steps_claim"), "steps", ["namespace", "step_handler", "state", "next_attempt_at", "priority"]
    )
    op.create_index(op.f("ix_steps_lease_expiry"), "steps", ["state", "lease_expire_time"])
    op.create_table(
        "step_dependencies",
        _id("task_id"),
        _id("step_id"),
        _id("depends_on_step_id"),
        sa.PrimaryKeyConstraint("step_id", "depends_on_step_id", name=op.f("pk_step_dependencies")),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_step_dependencies_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["step_id"], ["steps.id"], name=op.f("fk_step_dependencies_step_id_steps"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["depends_on_step_id"],
            ["steps.id"],
            name=op.f("fk_step_dependencies_depends_on_step_id_steps"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(op.f("ix_step_dependencies_depends_on"), "step_dependencies", ["depends_on_step_id"])
    op.create_index(op.f("ix_step_dependencies_task_id"), "step_dependencies", ["task_id"])
    op.create_table(
        "task_events",
        _id("task_id"),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("step_name", sa.String(63), nullable=True),
        sa.Column("previous_task_state", sa.String(16), nullable=True),
        sa.Column("task_state", sa.String(16), nullable=True),
        sa.Column("previous_step_state", sa.String(20), nullable=True),
        sa.Column("step_state", sa.String(20), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        _time("create_time"),
        sa.PrimaryKeyConstraint("task_id", "sequence", name=op.f("pk_task_events")),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_task_events_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.CheckConstraint(f"previous_task_state IN ({TASK_STATES})", name=op.f("ck_task_events_previous_task_state")),
        sa.CheckConstraint(f"task_state IN ({TASK_STATES})", name=op.f("ck_task_events_task_state")),
        sa.CheckConstraint(f"previous_step_state IN ({STEP_STATES})", name=op.f("ck_task_events_previous_step_state")),
        sa.CheckConstraint(f"step_state IN ({STEP_STATES})", name=op.f("ck_task_events_step_state")),
    )
    op.create_table(
        "workers",
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("worker_id", sa.String(128), nullable=False),
        sa.Column("step_handlers", sa.JSON(), nullable=False),
        _time("first_seen_time"),
        _time("last_seen_time"),
        sa.PrimaryKeyConstraint("namespace", "worker_id", name=op.f("pk_workers")),
    )
    op.create_index(op.f("ix_workers_last_seen_time"), "workers", ["last_seen_time"])
    _create_auth_tables()
    _create_audit_table()


def _create_auth_tables() -> None:
    op.create_table(
        "principals",
        _id(),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(256), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        _counter("revision", 1),
        _time("create_time"),
        _time("update_time"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_principals")),
        sa.UniqueConstraint("username", name=op.f("uq_principals_username")),
        sa.CheckConstraint("kind IN ('HUMAN', 'SERVICE_ACCOUNT')", name=op.f("ck_principals_kind")),
    )
    op.create_table(
        "password_hashes",
        _id("principal_id"),
        sa.Column("password_hash", sa.Text(), nullable=False),
        _time("update_time"),
        sa.PrimaryKeyConstraint("principal_id", name=op.f("pk_password_hashes")),
        sa.ForeignKeyConstraint(
            ["principal_id"],
            ["principals.id"],
            name=op.f("fk_password_hashes_principal_id_principals"),
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "role_bindings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _id("principal_id"),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=True),
        _time("create_time"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_role_bindings")),
        sa.ForeignKeyConstraint(
            ["principal_id"],
            ["principals.id"],
            name=op.f("fk_role_bindings_principal_id_principals"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "principal_id", "role", "namespace", name=op.f("uq_role_bindings_principal_id_role_namespace")
        ),
        sa.CheckConstraint(
            "role IN ('ADMIN', 'OPERATOR', 'DEVELOPER', 'WORKER', 'VIEWER')",
            name=op.f("ck_role_bindings_role"),
        ),
    )
    op.create_table(
        "api_keys",
        _id(),
        _id("principal_id"),
        sa.Column("display_name", sa.String(256), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(128), nullable=False),
        _time("create_time"),
        _time("expire_time", nullable=True),
        _time("last_used_time", nullable=True),
        _time("revoke_time", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.ForeignKeyConstraint(
            ["principal_id"],
            ["principals.id"],
            name=op.f("fk_api_keys_principal_id_principals"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(op.f("ix_api_keys_prefix"), "api_keys", ["prefix"])
    op.create_index(op.f("ix_api_keys_principal_id"), "api_keys", ["principal_id", "create_time"])
    op.create_table(
        "refresh_tokens",
        _id(),
        _id("principal_id"),
        _id("family_id"),
        sa.Column("token_hash", sa.String(128), nullable=False),
        _id("parent_id", nullable=True),
        _time("create_time"),
        _time("expire_time"),
        _time("used_time", nullable=True),
        _time("revoke_time", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_tokens")),
        sa.ForeignKeyConstraint(
            ["principal_id"],
            ["principals.id"],
            name=op.f("fk_refresh_tokens_principal_id_principals"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("token_hash", name=op.f("uq_refresh_tokens_token_hash")),
    )
    op.create_index(op.f("ix_refresh_tokens_family_id"), "refresh_tokens", ["family_id"])
    op.create_index(op.f("ix_refresh_tokens_principal_id"), "refresh_tokens", ["principal_id"])


def _create_audit_table() -> None:
    op.create_table(
        "audit_events",
        _id(),
        _time("create_time"),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        _id("principal_id", nullable=True),
        sa.Column("method", sa.String(256), nullable=True),
        sa.Column("peer", sa.String(256), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("namespace", sa.String(63), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
        sa.CheckConstraint("outcome IN ('ok', 'failed', 'denied')", name=op.f("ck_audit_events_outcome")),
    )
    op.create_index(op.f("ix_audit_events_create_time"), "audit_events", ["create_time"])
    op.create_index(op.f("ix_audit_events_action"), "audit_events", ["action", "create_time"])
    op.create_index(op.f("ix_audit_events_principal_id"), "audit_events", ["principal_id", "create_time"])


def downgrade() -> None:
    """Drop everything upgrade() created, dependents first (indexes go with their tables)."""
    for table in (
        "audit_events",
        "refresh_tokens",
        "api_keys",
        "role_bindings",
        "password_hashes",
        "principals",
        "workers",
        "task_events",
        "step_dependencies",
        "steps",
        "task_tags",
        "tasks",
        "handler_steps",
        "handlers",
        "namespaces",
    ):
        op.drop_table(table)
