"""Conversions between the task engine's records and the baton.v1 task protos, and read masks (AIP-157)."""

from __future__ import annotations

from typing import Any

from google.protobuf import field_mask_pb2, struct_pb2

from baton.domain.graph import GraphAnalysis
from baton.domain.states import StepState, TaskState
from baton.engine.task_create import NewTask
from baton.engine.task_sql import StepRecord, TaskRecord
from baton.engine.watch import TaskEventRecord
from baton.errors import FieldViolation, InvalidArgument
from baton.server.convert import duration, struct_to_dict, timestamp
from baton.v1 import common_pb2, tasks_pb2

#: W3C trace context headers stored with a task and handed to its leases.
TRACE_HEADERS = ("traceparent", "tracestate")


def new_task_from_proto(
    request: tasks_pb2.CreateTaskRequest,
    *,
    creator: str,
    call_request_id: str,
    metadata: dict[str, str],
    field_prefix: str = "",
) -> NewTask:
    """The engine's view of a CreateTask request, with the caller's trace context from the call metadata."""
    return NewTask(
        namespace=request.namespace,
        handler_name=request.handler_name,
        handler_version=request.handler_version,
        creator=creator,
        context=struct_to_dict(request.context, f"{field_prefix}context"),
        context_size=request.context.ByteSize(),
        tags=tuple(request.tags),
        priority=request.priority,
        correlation_id=request.correlation_id,
        request_id=request.request_id,
        call_request_id=call_request_id,
        trace_context={key: metadata[key] for key in TRACE_HEADERS if metadata.get(key)},
    )


def read_mask_paths(mask: field_mask_pb2.FieldMask, field: str = "read_mask") -> tuple[str, ...]:
    """The paths of a Task read mask; INVALID_ARGUMENT on `field` naming each unknown path."""
    violations = [
        FieldViolation(field, f"{path!r} is not a field of baton.v1.Task")
        for path in mask.paths
        if not field_mask_pb2.FieldMask(paths=[path]).IsValidForDescriptor(tasks_pb2.Task.DESCRIPTOR)
    ]
    if violations:
        raise InvalidArgument(f"{field} names unknown fields", field_violations=violations)
    return tuple(mask.paths)


def wants_steps(paths: tuple[str, ...]) -> bool:
    """Whether a read mask asks for the steps."""
    return any(path == "steps" or path.startswith("steps.") for path in paths)


def masked(task: tasks_pb2.Task, paths: tuple[str, ...]) -> tasks_pb2.Task:
    """`task` with only the fields of `paths` (all of them when there are none)."""
    if not paths:
        return task
    result = tasks_pb2.Task()
    field_mask_pb2.FieldMask(paths=list(paths)).MergeMessage(task, result)
    return result


def _struct(value: dict[str, Any] | None) -> struct_pb2.Struct | None:
    if value is None:
        return None
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def task_to_proto(task: TaskRecord) -> tasks_pb2.Task:
    """The Task proto of a record (its steps when they were loaded)."""
    return tasks_pb2.Task(
        id=task.id,
        namespace=task.namespace,
        handler_name=task.handler_name,
        handler_version=task.handler_version,
        state=_TASK_STATES[task.state],
        context=_struct(task.context),
        tags=list(task.tags),
        priority=task.priority,
        correlation_id=task.correlation_id,
        request_id=task.request_id or "",
        steps=[step_to_proto(step) for step in task.steps],
        create_time=timestamp(task.create_time),
        update_time=timestamp(task.update_time),
        complete_time=timestamp(task.complete_time),
        etag=task.etag,
        creator=task.creator,
    )


#: The proto enum value of each state (EnumTypeWrapper.Value is a Python call and a formatted name each time).
_TASK_STATES = {state: common_pb2.TaskState.Value(f"TASK_STATE_{state.value}") for state in TaskState}
_STEP_STATES = {state: common_pb2.StepState.Value(f"STEP_STATE_{state.value}") for state in StepState}


def step_to_proto(step: StepRecord) -> tasks_pb2.Step:
    """The Step proto of a record."""
    error = step.last_error
    return tasks_pb2.Step(
        id=step.id,
        name=step.name,
        state=_STEP_STATES[step.state],
        step_handler=step.step_handler,
        depends_on=list(step.depends_on),
        attempts=step.attempts,
        max_attempts=step.max_attempts,
        next_attempt_at=timestamp(step.next_attempt_at),
        result=_struct(step.result),
        last_error=None
        if error is None
        else tasks_pb2.StepError(
            error_type=str(error.get("error_type", "")),
            message=str(error.get("message", "")),
            retryable=bool(error.get("retryable", False)),
            attempt=int(error.get("attempt", 0)),
        ),
        worker_id=step.worker_id or "",
        lease_expire_time=timestamp(step.lease_expire_time),
        ready_time=timestamp(step.ready_time),
        start_time=timestamp(step.start_time),
        complete_time=timestamp(step.complete_time),
    )


def task_event_to_proto(event: TaskEventRecord) -> tasks_pb2.TaskEvent:
    """The TaskEvent proto of a stored event (UNSPECIFIED for the states a transition does not set)."""
    return tasks_pb2.TaskEvent(
        sequence=event.sequence,
        task_id=event.task_id,
        step_name=event.step_name or "",
        previous_task_state=_task_state(event.previous_task_state),
        task_state=_task_state(event.task_state),
        previous_step_state=_step_state_or_unset(event.previous_step_state),
        step_state=_step_state_or_unset(event.step_state),
        attempt=event.attempt or 0,
        reason=event.reason,
        actor=event.actor,
        create_time=timestamp(event.create_time),
    )


def _task_state(state: TaskState | None) -> common_pb2.TaskState.ValueType:
    if state is None:
        return common_pb2.TASK_STATE_UNSPECIFIED
    return _TASK_STATES[state]


def _step_state_or_unset(state: StepState | None) -> common_pb2.StepState.ValueType:
    return common_pb2.STEP_STATE_UNSPECIFIED if state is None else _STEP_STATES[state]


def graph_to_proto(task_id: str, analysis: GraphAnalysis) -> tasks_pb2.TaskGraph:
    """The TaskGraph proto of an analysis."""
    return tasks_pb2.TaskGraph(
        task_id=task_id,
        nodes=[
            tasks_pb2.GraphNode(
                step_name=node.name,
                state=_STEP_STATES[node.state],
                downstream_count=node.downstream_count,
                impact_score=node.impact_score,
                on_critical_path=node.on_critical_path,
                duration=None if node.duration is None else duration(node.duration),
                attempts=node.attempts,
            )
            for node in analysis.nodes
        ],
        edges=[
            tasks_pb2.GraphEdge(from_step=edge.from_step, to_step=edge.to_step, satisfied=edge.satisfied)
            for edge in analysis.edges
        ],
        critical_path=list(analysis.critical_path),
        critical_path_duration=duration(analysis.critical_path_duration),
        bottleneck_steps=list(analysis.bottlenecks),
    )
