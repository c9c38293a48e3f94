"""TaskService: create, read, list, cancel and analyse tasks.

The chain has already checked the caller's permission, in the request's namespace where the contract names one
(CreateTask, ListTasks). Methods addressing a task by ID check the permission in the task's namespace here, and
answer NOT_FOUND when it is missing, so that IDs in other namespaces cannot be probed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from baton.engine.repair import TaskRepair
from baton.engine.tasks import TaskEngine
from baton.engine.watch import TaskEventRecord, TaskWatcher
from baton.errors import FieldViolation, InvalidArgument, Unauthenticated, Unimplemented
from baton.server.convert import struct_to_dict
from baton.server.interceptors.base import Call, current_call
from baton.server.services.tasks_convert import (
    graph_to_proto,
    masked,
    new_task_from_proto,
    read_mask_paths,
    task_event_to_proto,
    task_to_proto,
    wants_steps,
)
from baton.v1 import tasks_pb2, tasks_pb2_grpc

_LIST_FIELDS_WITHOUT_STEPS = tuple(f.name for f in tasks_pb2.Task.DESCRIPTOR.fields if f.name != "steps")


def _call() -> Call:
    call = current_call()
    if call is None or call.principal is None:  # the chain authenticates every TaskService call
        raise Unauthenticated("TaskService needs an authenticated caller")
    return call


def _visible(permission: str) -> Callable[[str], bool]:
    """A predicate: may the caller use `permission` in a namespace."""
    principal = _call().principal
    assert principal is not None
    return lambda namespace: principal.can(permission, namespace)


def _require_id(task_id: str, field: str = "id") -> None:
    if not task_id:
        raise InvalidArgument(f"{field} is required", field_violations=[FieldViolation(field, "must not be empty")])


def _later(method: str) -> Unimplemented:
    return Unimplemented(f"TaskService.{method} comes with the dispatch engine and is not available yet")


class TaskService(tasks_pb2_grpc.TaskServiceServicer):
    """Converts and delegates to the TaskEngine (and to the TaskWatcher for WatchTask)."""

    def __init__(self, engine: TaskEngine, watcher: TaskWatcher, repair: TaskRepair | None = None) -> None:
        self._engine = engine
        self._watcher = watcher
        self._repair = repair

    async def CreateTask(self, request: tasks_pb2.CreateTaskRequest, context: Any) -> tasks_pb2.Task:
        """Create a task, or return the one created with the same request_id and body."""
        call = _call()
        assert call.principal is not None
        new = new_task_from_proto(
            request, creator=call.principal.id, call_request_id=call.request_id, metadata=call.metadata
        )
        return task_to_proto(await self._engine.create(new))

    async def GetTask(self, request: tasks_pb2.GetTaskRequest, context: Any) -> tasks_pb2.Task:
        """A task with its steps, limited to the read mask."""
        _require_id(request.id)
        paths = read_mask_paths(request.read_mask)
        task = await self._engine.get(request.id, _visible("tasks.read"), with_steps=not paths or wants_steps(paths))
        return masked(task_to_proto(task), paths)

    async def ListTasks(self, request: tasks_pb2.ListTasksRequest, context: Any) -> tasks_pb2.ListTasksResponse:
        """A page of a namespace's tasks, newest first; steps only when the read mask names them."""
        if not request.namespace:
            raise InvalidArgument(
                "namespace is required", field_violations=[FieldViolation("namespace", "must not be empty")]
            )
        paths = read_mask_paths(request.read_mask)
        page, token = await self._engine.list_tasks(
            request.namespace,
            page_size=request.page_size,
            page_token=request.page_token,
            filter_text=request.filter,
            bound={"read_mask": sorted(paths)},
            with_steps=wants_steps(paths),
        )
        fields = paths or _LIST_FIELDS_WITHOUT_STEPS
        return tasks_pb2.ListTasksResponse(
            tasks=[masked(task_to_proto(task), fields) for task in page], next_page_token=token
        )

    async def CancelTask(self, request: tasks_pb2.CancelTaskRequest, context: Any) -> tasks_pb2.Task:
        """Cancel a task; a cancelled task is returned as it is."""
        _require_id(request.id)
        call = _call()
        assert call.principal is not None
        task = await self._engine.cancel(
            request.id,
            _visible("tasks.cancel"),
            actor=call.principal.id,
            reason=request.reason,
            etag=request.etag,
        )
        self._watcher.notifier.task_changed(task.id)  # wake its watchers
        return task_to_proto(task)

    async def GetTaskGraph(self, request: tasks_pb2.GetTaskGraphRequest, context: Any) -> tasks_pb2.TaskGraph:
        """The task's dependency graph with its critical path, bottlenecks and impact scores."""
        _require_id(request.id)
        task, analysis = await self._engine.graph(request.id, _visible("tasks.read"))
        return graph_to_proto(task.id, analysis)

    async def BatchCreateTasks(
        self, request: tasks_pb2.BatchCreateTasksRequest, context: Any
    ) -> tasks_pb2.BatchCreateTasksResponse:
        """Create up to 1000 tasks of one namespace in one transaction: all of them or none."""
        call = _call()
        assert call.principal is not None
        entries = [
            new_task_from_proto(
                entry,
                creator=call.principal.id,
                call_request_id=call.request_id,
                metadata=call.metadata,
                field_prefix=f"requests[{i}].",
            )
            for i, entry in enumerate(request.requests)
        ]
        created = await self._engine.create_batch(request.namespace, entries)
        return tasks_pb2.BatchCreateTasksResponse(tasks=[task_to_proto(task) for task in created])

    async def RetryTask(self, request: tasks_pb2.RetryTaskRequest, context: Any) -> tasks_pb2.Task:
        """Run a FAILED task's failed steps again, with fresh attempts."""
        _require_id(request.id)
        if self._repair is None:
            raise _later("RetryTask")
        principal = _call().principal
        assert principal is not None
        task = await self._repair.retry(request.id, _visible("tasks.retry"), actor=principal.id, etag=request.etag)
        return task_to_proto(task)

    async def ResolveStep(self, request: tasks_pb2.ResolveStepRequest, context: Any) -> tasks_pb2.Task:
        """Mark a step resolved by an operator with a result; its dependents proceed."""
        _require_id(request.task_id, "task_id")
        _require_id(request.step_name, "step_name")
        if self._repair is None:
            raise _later("ResolveStep")
        principal = _call().principal
        assert principal is not None
        task = await self._repair.resolve(
            request.task_id,
            request.step_name,
            _visible("tasks.resolve"),
            actor=principal.id,
            result=struct_to_dict(request.result, "result"),
            result_size=request.result.ByteSize(),
            reason=request.reason,
        )
        return task_to_proto(task)

    async def WatchTask(
        self, request: tasks_pb2.WatchTaskRequest, context: Any
    ) -> AsyncIterator[tasks_pb2.WatchTaskResponse]:
        """A snapshot of the task, then its events (those above after_sequence first) until it finishes; ends
        with OK when the server shuts down."""
        _require_id(request.id)
        if request.after_sequence < 0:
            raise InvalidArgument(
                "after_sequence must not be negative",
                field_violations=[FieldViolation("after_sequence", "must be 0 or a sequence the watch has seen")],
            )
        call = _call()
        items = self._watcher.watch(request.id, _visible("tasks.read"), request.after_sequence, call.time_remaining)
        async for item in items:
            if isinstance(item, TaskEventRecord):
                yield tasks_pb2.WatchTaskResponse(event=task_event_to_proto(item))
            else:
                yield tasks_pb2.WatchTaskResponse(snapshot=task_to_proto(item))
