"""TaskService for `Client.tasks` and `AsyncClient.tasks`: create, read, steer and watch tasks."""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from typing import Any, Unpack

from baton.client._async_transport import AsyncTransport
from baton.client._convert import create_task_request, field_mask, struct
from baton.client._methods import spec
from baton.client._options import CallOptions
from baton.client._sync_transport import SyncTransport
from baton_betterproto.baton.v1 import (
    BatchCreateTasksRequest,
    CancelTaskRequest,
    CreateTaskRequest,
    GetTaskGraphRequest,
    GetTaskRequest,
    ListTasksRequest,
    ListTasksResponse,
    ResolveStepRequest,
    RetryTaskRequest,
    Task,
    TaskGraph,
    TaskServiceAsyncStub,
    TaskServiceStub,
    WatchTaskRequest,
    WatchTaskResponse,
)
from baton_betterproto.google.protobuf import Struct

_S = "TaskService"
CREATE, BATCH, GET, LIST = (
    spec(_S, "CreateTask"),
    spec(_S, "BatchCreateTasks"),
    spec(_S, "GetTask"),
    spec(_S, "ListTasks"),
)
CANCEL, RETRY, RESOLVE = spec(_S, "CancelTask"), spec(_S, "RetryTask"), spec(_S, "ResolveStep")
GRAPH, WATCH = spec(_S, "GetTaskGraph"), spec(_S, "WatchTask")

Context = Mapping[str, Any] | Struct


class Tasks:
    """TaskService through the sync client."""

    def __init__(self, transport: SyncTransport) -> None:
        self._rpc = transport
        self._stub = TaskServiceStub(transport.channel)

    def create(
        self,
        namespace: str,
        handler: str,
        context: Context | None = None,
        *,
        version: str = "",
        tags: Sequence[str] = (),
        priority: int = 0,
        correlation_id: str = "",
        **options: Unpack[CallOptions],
    ) -> Task:
        """Create a task of `handler` (its latest version unless `version`). A `request_id` is both the call's
        request ID and the AIP-155 idempotency key: the same key returns the same task, and makes the call
        safe to retry (without one it is never retried)."""
        request = create_task_request(
            namespace,
            handler,
            context,
            version=version,
            tags=tags,
            priority=priority,
            correlation_id=correlation_id,
            request_id=options.get("request_id", ""),
        )
        return self._rpc.unary(CREATE, self._stub.create_task, request, options)

    def batch_create(
        self, namespace: str, requests: Sequence[CreateTaskRequest], **options: Unpack[CallOptions]
    ) -> builtins.list[Task]:
        """Create up to 1000 tasks of one namespace, all or none; retried only when every entry has a
        request_id. Build entries with `baton.client.create_task_request`."""
        request = BatchCreateTasksRequest(namespace=namespace, requests=list(requests))
        return self._rpc.unary(BATCH, self._stub.batch_create_tasks, request, options).tasks

    def get(self, task_id: str, *, read_mask: Sequence[str] = (), **options: Unpack[CallOptions]) -> Task:
        """A task with its steps (only the fields in `read_mask` when given)."""
        request = GetTaskRequest(id=task_id, read_mask=field_mask(read_mask))
        return self._rpc.unary(GET, self._stub.get_task, request, options)

    def list(
        self,
        namespace: str,
        *,
        filter: str = "",
        page_size: int = 0,
        page_token: str = "",
        read_mask: Sequence[str] = (),
        **options: Unpack[CallOptions],
    ) -> ListTasksResponse:
        """One page of a namespace's tasks, newest first, with an AIP-160 `filter`."""
        request = ListTasksRequest(
            namespace=namespace,
            filter=filter,
            page_size=page_size,
            page_token=page_token,
            read_mask=field_mask(read_mask),
        )
        return self._rpc.unary(LIST, self._stub.list_tasks, request, options)

    def cancel(self, task_id: str, *, reason: str = "", etag: str = "", **options: Unpack[CallOptions]) -> Task:
        """Cancel a task (idempotent); a stale `etag` raises AbortedError."""
        request = CancelTaskRequest(id=task_id, reason=reason, etag=etag)
        return self._rpc.unary(CANCEL, self._stub.cancel_task, request, options)

    def retry(self, task_id: str, *, etag: str = "", **options: Unpack[CallOptions]) -> Task:
        """Put the failed steps of a failed task back to READY."""
        return self._rpc.unary(RETRY, self._stub.retry_task, RetryTaskRequest(id=task_id, etag=etag), options)

    def resolve_step(
        self,
        task_id: str,
        step_name: str,
        result: Context | None = None,
        *,
        reason: str = "",
        **options: Unpack[CallOptions],
    ) -> Task:
        """Mark a step resolved by an operator with `result`; its dependents proceed."""
        request = ResolveStepRequest(task_id=task_id, step_name=step_name, result=struct(result), reason=reason)
        return self._rpc.unary(RESOLVE, self._stub.resolve_step, request, options)

    def graph(self, task_id: str, **options: Unpack[CallOptions]) -> TaskGraph:
        """The task's dependency graph with critical path, bottlenecks and impact scores."""
        return self._rpc.unary(GRAPH, self._stub.get_task_graph, GetTaskGraphRequest(id=task_id), options)

    def watch(
        self, task_id: str, *, after_sequence: int = 0, **options: Unpack[CallOptions]
    ) -> Generator[WatchTaskResponse, None, None]:
        """A snapshot of the task, then its events until it finishes; close the iterator to stop early."""
        request = WatchTaskRequest(id=task_id, after_sequence=after_sequence)
        return self._rpc.stream(WATCH, self._stub.watch_task, request, options)


class AsyncTasks:
    """TaskService through the async client."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._rpc = transport
        self._stub = TaskServiceAsyncStub(transport.channel)

    async def create(
        self,
        namespace: str,
        handler: str,
        context: Context | None = None,
        *,
        version: str = "",
        tags: Sequence[str] = (),
        priority: int = 0,
        correlation_id: str = "",
        **options: Unpack[CallOptions],
    ) -> Task:
        """Create a task; see `Tasks.create` for how `request_id` makes it idempotent."""
        request = create_task_request(
            namespace,
            handler,
            context,
            version=version,
            tags=tags,
            priority=priority,
            correlation_id=correlation_id,
            request_id=options.get("request_id", ""),
        )
        return await self._rpc.unary(CREATE, self._stub.create_task, request, options)

    async def batch_create(
        self, namespace: str, requests: Sequence[CreateTaskRequest], **options: Unpack[CallOptions]
    ) -> builtins.list[Task]:
        """Create up to 1000 tasks of one namespace, all or none."""
        request = BatchCreateTasksRequest(namespace=namespace, requests=list(requests))
        return (await self._rpc.unary(BATCH, self._stub.batch_create_tasks, request, options)).tasks

    async def get(self, task_id: str, *, read_mask: Sequence[str] = (), **options: Unpack[CallOptions]) -> Task:
        """A task with its steps (only the fields in `read_mask` when given)."""
        request = GetTaskRequest(id=task_id, read_mask=field_mask(read_mask))
        return await self._rpc.unary(GET, self._stub.get_task, request, options)

    async def list(
        self,
        namespace: str,
        *,
        filter: str = "",
        page_size: int = 0,
        page_token: str = "",
        read_mask: Sequence[str] = (),
        **options: Unpack[CallOptions],
    ) -> ListTasksResponse:
        """One page of a namespace's tasks, newest first, with an AIP-160 `filter`."""
        request = ListTasksRequest(
            namespace=namespace,
            filter=filter,
            page_size=page_size,
            page_token=page_token,
            read_mask=field_mask(read_mask),
        )
        return await self._rpc.unary(LIST, self._stub.list_tasks, request, options)

    async def cancel(self, task_id: str, *, reason: str = "", etag: str = "", **options: Unpack[CallOptions]) -> Task:
        """Cancel a task (idempotent); a stale `etag` raises AbortedError."""
        request = CancelTaskRequest(id=task_id, reason=reason, etag=etag)
        return await self._rpc.unary(CANCEL, self._stub.cancel_task, request, options)

    async def retry(self, task_id: str, *, etag: str = "", **options: Unpack[CallOptions]) -> Task:
        """Put the failed steps of a failed task back to READY."""
        request = RetryTaskRequest(id=task_id, etag=etag)
        return await self._rpc.unary(RETRY, self._stub.retry_task, request, options)

    async def resolve_step(
        self,
        task_id: str,
        step_name: str,
        result: Context | None = None,
        *,
        reason: str = "",
        **options: Unpack[CallOptions],
    ) -> Task:
        """Mark a step resolved by an operator with `result`; its dependents proceed."""
        request = ResolveStepRequest(task_id=task_id, step_name=step_name, result=struct(result), reason=reason)
        return await self._rpc.unary(RESOLVE, self._stub.resolve_step, request, options)

    async def graph(self, task_id: str, **options: Unpack[CallOptions]) -> TaskGraph:
        """The task's dependency graph with critical path, bottlenecks and impact scores."""
        return await self._rpc.unary(GRAPH, self._stub.get_task_graph, GetTaskGraphRequest(id=task_id), options)

    def watch(
        self, task_id: str, *, after_sequence: int = 0, **options: Unpack[CallOptions]
    ) -> AsyncGenerator[WatchTaskResponse, None]:
        """A snapshot of the task, then its events until it finishes (`async for`); `aclose()` stops early."""
        request = WatchTaskRequest(id=task_id, after_sequence=after_sequence)
        return self._rpc.stream(WATCH, self._stub.watch_task, request, options)
