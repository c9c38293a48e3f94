"""The task engine: create, read, list, cancel and analyse tasks, each write one transaction in one hop.

Creation resolves the handler version through the HandlerRegistry and writes the task, its tags, steps (READY when
they have no dependencies, else PENDING with their remaining-dependency count), dependencies and events together.
AIP-155 idempotency: one task per (namespace, creator, request_id), enforced by a unique index; a retry with the
same body returns the task, another body is ALREADY_EXISTS, and concurrent retries meet at the index (the loser
re-reads). Tasks addressed by ID are looked up with a `visible(namespace)` predicate: a task the caller may not
see is NOT_FOUND, exactly like a missing one.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from baton.config import EngineConfig
from baton.domain.dag import shorten
from baton.domain.graph import GraphAnalysis, GraphStep, GraphWeights, analyze_graph
from baton.domain.states import StepState, TaskState
from baton.engine import task_sql
from baton.engine.batching import Coalescer
from baton.engine.dispatch import Dispatcher
from baton.engine.dispatch_sql import Lease
from baton.engine.eager import Handoffs, WaitingPoll
from baton.engine.handlers import HandlerRegistry
from baton.engine.metrics import TASKS_CREATED, TASKS_FINISHED
from baton.engine.notify import Notifier
from baton.engine.task_create import NewTask, task_violations
from baton.engine.task_filter import parse_filter
from baton.engine.task_sql import EventLog, TaskRecord
from baton.engine.task_write import REQUEST_ID_REUSED, TASK_RESOURCE_TYPE, Prepared, Rows, write_tasks
from baton.engine.touched import Touched
from baton.errors import (
    Aborted,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceRef,
)
from baton.pagination import decode_token, encode_token
from baton.pagination import page_size as effective_page_size
from baton.store import SqlStore

__all__ = ["REQUEST_ID_REUSED", "TASK_RESOURCE_TYPE", "NewTask", "TaskEngine", "TaskRecord", "task_not_found"]

T = TypeVar("T")
#: Most tasks one BatchCreateTasks may create.
MAX_BATCH = 1000
#: Most CreateTask calls written in one group-committed transaction.
MAX_GROUP_COMMIT = 256
Visible = Callable[[str], bool]


def _invalid(what: str, violations: list[FieldViolation]) -> InvalidArgument:
    first = violations[0]
    more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
    return InvalidArgument(f"{what}: {first.field}: {first.description}{more}", field_violations=violations)


def task_not_found(task_id: str) -> NotFound:
    """NOT_FOUND for a task that does not exist or that the caller may not see."""
    shown = shorten(task_id)
    return NotFound(
        f"task {shown} not found",
        reason="TASK_NOT_FOUND",
        metadata={"id": shown},
        resource=ResourceRef(TASK_RESOURCE_TYPE, f"tasks/{shown}"),
    )


class TaskEngine:
    """Creates, reads, lists, cancels and analyses tasks."""

    def __init__(
        self,
        store: SqlStore,
        handlers: HandlerRegistry,
        weights: GraphWeights,
        notifier: Notifier | None = None,
        eager: Dispatcher | None = None,
    ) -> None:
        self._store = store
        self._handlers = handlers
        self.weights = weights
        self._notifier = notifier
        self._eager = eager
        self._creates: Coalescer[Prepared, TaskRecord] = Coalescer(
            self._write_created, MAX_GROUP_COMMIT, store.write_turn
        )

    @classmethod
    def from_config(
        cls,
        store: SqlStore,
        handlers: HandlerRegistry,
        config: EngineConfig,
        notifier: Notifier | None = None,
        eager: Dispatcher | None = None,
    ) -> TaskEngine:
        """An engine with the graph weights of the configuration; `notifier` hears of new READY steps, and the
        dispatcher `eager` hands them to waiting workers in the creating transaction."""
        weights = GraphWeights(
            downstream=config.graph_weight_downstream,
            critical_path=config.graph_weight_critical_path,
            failures=config.graph_weight_failures,
        )
        return cls(store, handlers, weights, notifier, eager)

    async def create(self, new: NewTask) -> TaskRecord:
        """Create a task (INVALID_ARGUMENT naming every bad field, NOT_FOUND for an unknown handler version), or
        return the one created before with the same request_id and body (ALREADY_EXISTS for another body).

        Concurrent calls are group-committed: those arriving while a transaction is in flight share the next."""
        (prepared,) = await self._prepare([new], [""])
        return await self._creates.submit(prepared)

    def _count_created(self, answers: Sequence[TaskRecord | Exception], now: datetime, handed: Sequence[Lease]) -> None:
        """After the commit: count the new tasks and wake the pollers of their steps still READY (those not
        handed to waiting workers already), before the callers' responses are built."""
        fresh = {a.id: a for a in answers if isinstance(a, TaskRecord) and a.create_time == now}
        ready: Counter[tuple[str, str]] = Counter()
        for (namespace, handler), count in Counter((t.namespace, t.handler_name) for t in fresh.values()).items():
            TASKS_CREATED.labels(namespace, handler).inc(count)
        for task in fresh.values():
            ready.update((task.namespace, step.step_handler) for step in task.steps if step.state is StepState.READY)
        ready.subtract((lease.namespace, lease.step_handler) for lease in handed)
        if self._notifier is not None:
            by_namespace: dict[str, list[str]] = {}
            for (namespace, handler), left in ready.items():
                if left > 0:
                    by_namespace.setdefault(namespace, []).append(handler)
            for namespace, handlers in by_namespace.items():
                self._notifier.steps_ready(namespace, handlers)

    async def create_batch(self, namespace: str, entries: Sequence[NewTask]) -> list[TaskRecord]:
        """Create up to MAX_BATCH tasks of one namespace in one transaction, all or none; each entry names the
        batch's namespace or none, and deduplicates by request_id as in `create`."""
        violations = [] if namespace else [FieldViolation("namespace", "must not be empty")]
        if len(entries) > MAX_BATCH:
            violations.append(FieldViolation("requests", f"at most {MAX_BATCH} entries, got {len(entries)}"))
        for i, entry in enumerate(entries):
            if entry.namespace not in ("", namespace):
                violations.append(FieldViolation(f"requests[{i}].namespace", f"must be empty or {namespace!r}"))
        if violations:
            raise _invalid("invalid batch", violations)
        filled = [replace(entry, namespace=namespace) for entry in entries]
        return await self._create_all(filled, [f"requests[{i}]." for i in range(len(filled))])

    async def _create_all(self, entries: Sequence[NewTask], prefixes: Sequence[str]) -> list[TaskRecord]:
        answers = await self._write(await self._prepare(entries, prefixes), all_or_nothing=True)
        return [answer for answer in answers if isinstance(answer, TaskRecord)]

    async def _prepare(self, entries: Sequence[NewTask], prefixes: Sequence[str]) -> list[Prepared]:
        violations = [
            v for entry, prefix in zip(entries, prefixes, strict=True) for v in task_violations(entry, prefix)
        ]
        if violations:
            raise _invalid("invalid task", violations)
        handlers = {}
        for entry in entries:
            key = (entry.namespace, entry.handler_name, entry.handler_version)
            if key not in handlers:
                handlers[key] = (await self._handlers.get(*key)).definition
        # The digest only tells a retry from a reuse of a request_id: without one there is nothing to tell.
        return [
            Prepared(
                entry,
                handlers[(entry.namespace, entry.handler_name, entry.handler_version)],
                entry.request_hash() if entry.request_id else None,
            )
            for entry in entries
        ]

    async def _write_created(self, batch: list[Prepared]) -> list[TaskRecord | Exception]:
        return await self._write(batch, all_or_nothing=False)

    async def _write(self, batch: Sequence[Prepared], *, all_or_nothing: bool) -> list[TaskRecord | Exception]:
        """Write the batch in one transaction, in which the workers already waiting for its READY steps get them
        (eager dispatch); then count the new tasks and wake the pollers of the steps left READY."""
        now = datetime.now(UTC)
        # SQLite only: its writers are serialised, while on PostgreSQL a create that also locked other tasks' steps
        # could meet a completing transaction in a deadlock; there the NOTIFY wake-up path serves.
        eager = self._eager if self._store.backend == "sqlite" else None
        reserved = [] if eager is None else _reserve(eager.handoffs, batch)

        def write(connection: Connection) -> Written:
            if eager is None or not reserved:
                return write_tasks(connection, batch, now, all_or_nothing=all_or_nothing), {}, []
            leased: dict[WaitingPoll, list[Lease]] = {}
            rest = list(reserved)

            def lease_new(created: Sequence[Rows]) -> None:
                nonlocal leased, rest
                leased, rest = eager.lease_new(connection, reserved, created, now)

            answers = write_tasks(connection, batch, now, all_or_nothing=all_or_nothing, before_insert=lease_new)
            if not rest:
                return answers, leased, []
            created = frozenset(a.id for a in answers if isinstance(a, TaskRecord) and a.create_time == now)
            given, touched = eager.claim_for(connection, rest, now, created)
            return answers, {**leased, **given}, touched

        written: Written = ([], {}, [])
        try:
            try:
                written = await self._store.run_in_transaction(write)
            except IntegrityError:  # a concurrent create with one of the request_ids won: its task is there now
                if not any(prepared.entry.request_id for prepared in batch):
                    raise
                written = await self._store.run_in_transaction(write)
        finally:
            if eager is not None:
                eager.handed(reserved, written[1], written[2])  # every reserved poll is answered, even on failure
        answers, given, _ = written
        self._count_created(answers, now, [lease for leases in given.values() for lease in leases])
        return answers

    async def get(self, task_id: str, visible: Visible, *, with_steps: bool = True) -> TaskRecord:
        """A task with its steps; NOT_FOUND when it does not exist or `visible` refuses its namespace."""
        if not _is_uuid(task_id):
            raise task_not_found(task_id)
        found = await self._read(lambda c: task_sql.load_task(c, task_id, with_steps=with_steps))
        if found is None or not visible(found.namespace):
            raise task_not_found(task_id)
        return found

    async def list_tasks(
        self,
        namespace: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        filter_text: str = "",
        bound: dict[str, Any] | None = None,
        with_steps: bool = False,
    ) -> tuple[list[TaskRecord], str]:
        """A page of a namespace's tasks, newest first, matching the filter, and the next page's token.

        The token is bound to the namespace, the filter and `bound` (the caller's other request fields)."""
        limit = effective_page_size(page_size)
        binding = {"namespace": namespace, "filter": filter_text, **(bound or {})}
        position = decode_token(page_token, binding)
        task_filter = parse_filter(filter_text)
        after = None if position is None else _position(position)
        page, more = await self._read(lambda c: task_sql.list_page(c, namespace, task_filter, after, limit, with_steps))
        if not more:
            return page, ""
        last = page[-1]
        return page, encode_token({"t": last.create_time.isoformat(), "i": last.id}, binding)

    async def cancel(
        self, task_id: str, visible: Visible, *, actor: str, reason: str = "", etag: str = ""
    ) -> TaskRecord:
        """Cancel a task: its PENDING and READY steps are CANCELLED, RUNNING ones learn it on their next heartbeat
        (the task is CANCELLED). A cancelled task is returned as it is; a COMPLETED or FAILED one is
        FAILED_PRECONDITION; a stale `etag` is ABORTED."""
        if not _is_uuid(task_id):
            raise task_not_found(task_id)
        why = reason or "cancelled"

        def write(connection: Connection) -> tuple[str, str] | None:
            row = task_sql.task_row(connection, task_id, for_update=True)
            if row is None or not visible(row.namespace):
                raise task_not_found(task_id)
            state = TaskState(row.state)
            if state is TaskState.CANCELLED:
                return None
            if etag and etag != str(row.revision):
                raise Aborted(
                    f"task {task_id} changed: etag {etag!r} is not the current one; read it again",
                    reason="ETAG_MISMATCH",
                    metadata={"id": task_id, "etag": str(row.revision)},
                )
            if state in (TaskState.COMPLETED, TaskState.FAILED):
                raise FailedPrecondition(
                    f"task {task_id} is {state.value} and cannot be cancelled",
                    reason="TASK_FINISHED",
                    metadata={"id": task_id, "state": state.value},
                )
            events = EventLog(task_id, row.last_event_sequence, actor, datetime.now(UTC))
            task_sql.cancel_steps(connection, task_id, events, why)
            events.task(state, TaskState.CANCELLED, why)
            task_sql.mark_cancelled(connection, task_id, row.revision, events)
            return row.namespace, row.handler_name

        cancelled = await self._store.run_in_transaction(write)
        if cancelled is not None:
            TASKS_FINISHED.labels(*cancelled, "cancelled").inc()
        return await self.get(task_id, visible)

    async def graph(self, task_id: str, visible: Visible) -> tuple[TaskRecord, GraphAnalysis]:
        """The task and the analysis of its step graph (durations from step start and complete times)."""
        task = await self.get(task_id, visible)
        now = datetime.now(UTC)
        by_position = sorted(task.steps, key=lambda s: s.position)
        graph_steps = [
            GraphStep(
                name=step.name,
                depends_on=step.depends_on,
                state=step.state,
                attempts=step.attempts,
                duration=None
                if step.start_time is None
                else ((step.complete_time or now) - step.start_time).total_seconds(),
            )
            for step in by_position
        ]
        return task, analyze_graph(graph_steps, self.weights)

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        return await self._store.run_read(fn)


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def _position(position: dict[str, Any]) -> tuple[datetime, str]:
    time, task_id = position.get("t"), position.get("i")
    try:
        if isinstance(time, str) and isinstance(task_id, str):
            parsed = datetime.fromisoformat(time)
            if parsed.tzinfo is not None:
                return parsed, task_id
    except ValueError:
        pass
    raise InvalidArgument(
        "page_token is not a token this server issued",
        field_violations=[FieldViolation("page_token", "malformed page token")],
    )


Written = tuple[list[TaskRecord | Exception], dict[WaitingPoll, list[Lease]], list[Touched]]


def _reserve(handoffs: Handoffs, batch: Sequence[Prepared]) -> list[WaitingPoll]:
    """The waiting polls of the step handlers the batch's new tasks make READY, reserved for its transaction."""
    ready: dict[str, set[str]] = {}
    for prepared in batch:
        handlers = ready.setdefault(prepared.entry.namespace, set())
        handlers.update(step.step_handler for step in prepared.definition.steps if not step.depends_on)
    return [poll for namespace, handlers in ready.items() for poll in handoffs.reserve(namespace, handlers)]
