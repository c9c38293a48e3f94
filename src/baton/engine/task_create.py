"""A new task: the CreateTask input the engine takes, its validation, and the rows it is written as.

Validation returns every problem at once as field violations (`tags[2]`, or `requests[3].tags[2]` in a batch).
The rows: the task, its steps (READY with `ready_time` and `next_attempt_at` set when they have no dependencies,
else PENDING with their remaining-dependency count), the dependencies between them, and the events (task created,
then one per step made READY), numbered from 1.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from baton.domain.backoff import RetryPolicy
from baton.domain.dag import shorten
from baton.domain.handlers import MAX_PRIORITY, MIN_PRIORITY, HandlerDefinition
from baton.domain.states import StepState, TaskState
from baton.engine.task_sql import EventLog
from baton.errors import FieldViolation
from baton.store.ids import new_id


@dataclass(frozen=True, slots=True)
class NewTask:
    """A CreateTask request as the engine sees it; `context_size` is the encoded size of the context."""

    namespace: str
    handler_name: str
    creator: str
    handler_version: str = ""
    context: dict[str, Any] = field(default_factory=dict)
    context_size: int = 0
    tags: tuple[str, ...] = ()
    priority: int = 0
    correlation_id: str = ""
    request_id: str = ""
    call_request_id: str = ""
    trace_context: dict[str, str] = field(default_factory=dict)

    def request_hash(self) -> str:
        """SHA-256 of the canonical request body, to tell a retry from a reuse of its request_id."""
        body = {
            "namespace": self.namespace,
            "handler_name": self.handler_name,
            "handler_version": self.handler_version,
            "context": self.context,
            "tags": list(self.tags),
            "priority": self.priority,
            "correlation_id": self.correlation_id,
        }
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


MAX_CONTEXT_BYTES = 256 * 1024
MAX_TAGS = 32
MAX_TAG_LENGTH = 64
MAX_CORRELATION_ID_LENGTH = 128
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}", re.ASCII)


def task_violations(new: NewTask, prefix: str = "") -> list[FieldViolation]:
    """Every bad field of a CreateTask request, each path under `prefix` (`requests[3].`).

    Each message is made only when its check fails: this runs on every CreateTask, where every check passes.
    """
    violations: list[FieldViolation] = []

    def add(field_path: str, description: str) -> None:
        violations.append(FieldViolation(prefix + field_path, description))

    if not new.namespace:
        add("namespace", "must not be empty")
    if not new.handler_name:
        add("handler_name", "must not be empty")
    if new.context_size > MAX_CONTEXT_BYTES:
        add("context", f"at most {MAX_CONTEXT_BYTES} bytes once encoded, got {new.context_size}")
    if len(new.tags) > MAX_TAGS:
        add("tags", f"at most {MAX_TAGS} tags, got {len(new.tags)}")
    if new.tags:
        seen: set[str] = set()
        for i, tag in enumerate(new.tags):
            if not 0 < len(tag) <= MAX_TAG_LENGTH:
                add(f"tags[{i}]", f"1-{MAX_TAG_LENGTH} characters, got {len(tag)}")
            if tag in seen:
                add(f"tags[{i}]", f"duplicate tag {shorten(tag)!r}")
            seen.add(tag)
    if not MIN_PRIORITY <= new.priority <= MAX_PRIORITY:
        add("priority", f"must be between {MIN_PRIORITY} and {MAX_PRIORITY}, got {new.priority}")
    if len(new.correlation_id) > MAX_CORRELATION_ID_LENGTH:
        add("correlation_id", f"at most {MAX_CORRELATION_ID_LENGTH} characters")
    if new.request_id and not REQUEST_ID_PATTERN.fullmatch(new.request_id):
        add("request_id", "1-128 characters of [A-Za-z0-9._:-]")
    return violations


def new_task_rows(
    new: NewTask, definition: HandlerDefinition, request_hash: str | None, now: datetime
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], EventLog]:
    """The rows of a new task: the task, its steps (READY without dependencies, else PENDING), their dependencies,
    and its events (task created, then each step made READY)."""
    task_id = new_id()
    events = EventLog(task_id, 0, new.creator, now)
    events.task(None, TaskState.PENDING, "task created")
    step_ids = {step.name: new_id() for step in definition.steps}
    step_rows: list[dict[str, Any]] = []
    dependencies: list[dict[str, Any]] = []
    for position, step in enumerate(definition.steps):
        policy = step.retry_policy or RetryPolicy()
        ready = not step.depends_on
        step_rows.append(
            {
                "id": step_ids[step.name],
                "task_id": task_id,
                "namespace": new.namespace,
                "name": step.name,
                "position": position,
                "step_handler": step.step_handler,
                "state": (StepState.READY if ready else StepState.PENDING).value,
                "max_attempts": policy.max_attempts,
                "retry_policy": _policy_json(policy),
                "lease_timeout_seconds": step.lease_timeout or 0.0,
                "priority": step.priority,
                "remaining_dependencies": len(step.depends_on),
                "ready_time": now if ready else None,
                "next_attempt_at": now if ready else None,
                # The lease columns, as the table defaults them: eager dispatch may lease the step before it is
                # inserted (Dispatcher.lease_new), and every row of one insert has the same columns.
                "attempts": 0,
                "fencing_token": 0,
                "worker_id": None,
                "start_time": None,
                "lease_expire_time": None,
            }
        )
        dependencies += [
            {"task_id": task_id, "step_id": step_ids[step.name], "depends_on_step_id": step_ids[name]}
            for name in step.depends_on
        ]
    for step in definition.steps:
        if not step.depends_on:
            events.step(step.name, StepState.PENDING, StepState.READY, 0, "no dependencies")
    task = {
        "id": task_id,
        "namespace": new.namespace,
        "handler_name": new.handler_name,
        "handler_version": definition.version,
        "state": TaskState.PENDING.value,
        "context": new.context,
        "tags": list(new.tags),
        "priority": new.priority,
        "correlation_id": new.correlation_id or new.call_request_id,
        "request_id": new.request_id or None,
        "creator": new.creator,
        "request_hash": request_hash,
        "trace_context": dict(new.trace_context),
        "create_time": now,
        "update_time": now,
    }
    return task, step_rows, dependencies, events


def _policy_json(policy: RetryPolicy) -> dict[str, Any]:
    return {
        "max_attempts": int(policy.max_attempts),
        "initial_backoff": float(policy.initial_backoff),
        "backoff_coefficient": float(policy.backoff_coefficient),
        "max_backoff": float(policy.max_backoff),
        "jitter": float(policy.jitter),
        "non_retryable_error_types": sorted(policy.non_retryable_error_types),
    }
