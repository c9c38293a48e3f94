"""Conversions between the handler registry's records and the baton.v1 handler protos."""

from __future__ import annotations

from baton.domain.backoff import RetryPolicy
from baton.domain.handlers import HandlerDefinition, StepDefinition
from baton.engine.handlers import NamespaceSummary, RegisteredHandler
from baton.server.convert import duration, seconds, timestamp
from baton.v1 import handlers_pb2


def definition_from_proto(handler: handlers_pb2.Handler) -> HandlerDefinition:
    """The definition a RegisterHandler request carries; output-only fields are ignored, unset fields stay unset
    (a retry policy's zero fields, a missing lease timeout) for the registry to resolve."""
    return HandlerDefinition(
        namespace=handler.namespace,
        name=handler.name,
        version=handler.version,
        steps=tuple(_step_from_proto(step) for step in handler.steps),
        description=handler.description,
    )


def _step_from_proto(step: handlers_pb2.StepTemplate) -> StepDefinition:
    return StepDefinition(
        name=step.name,
        step_handler=step.step_handler,
        depends_on=tuple(step.depends_on),
        retry_policy=_retry_policy_from_proto(step.retry_policy) if step.HasField("retry_policy") else None,
        lease_timeout=seconds(step.lease_timeout) if step.HasField("lease_timeout") else None,
        priority=step.priority,
        description=step.description,
    )


def _retry_policy_from_proto(policy: handlers_pb2.RetryPolicy) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=policy.max_attempts,
        initial_backoff=seconds(policy.initial_backoff),
        backoff_coefficient=policy.backoff_coefficient,
        max_backoff=seconds(policy.max_backoff),
        jitter=policy.jitter,
        non_retryable_error_types=frozenset(policy.non_retryable_error_types),
    )


def handler_to_proto(handler: RegisteredHandler) -> handlers_pb2.Handler:
    """The Handler proto of a stored version (its steps with every default resolved)."""
    d = handler.definition
    return handlers_pb2.Handler(
        namespace=d.namespace,
        name=d.name,
        version=d.version,
        description=d.description,
        steps=[_step_to_proto(step) for step in d.steps],
        create_time=timestamp(handler.create_time),
        definition_digest=handler.definition_digest,
    )


def _step_to_proto(step: StepDefinition) -> handlers_pb2.StepTemplate:
    policy = step.retry_policy or RetryPolicy()
    return handlers_pb2.StepTemplate(
        name=step.name,
        depends_on=list(step.depends_on),
        step_handler=step.step_handler,
        retry_policy=handlers_pb2.RetryPolicy(
            max_attempts=policy.max_attempts,
            initial_backoff=duration(policy.initial_backoff),
            backoff_coefficient=policy.backoff_coefficient,
            max_backoff=duration(policy.max_backoff),
            jitter=policy.jitter,
            non_retryable_error_types=sorted(policy.non_retryable_error_types),
        ),
        lease_timeout=duration(step.lease_timeout or 0.0),
        priority=step.priority,
        description=step.description,
    )


def namespace_to_proto(namespace: NamespaceSummary) -> handlers_pb2.Namespace:
    """The Namespace proto of a summary."""
    return handlers_pb2.Namespace(
        name=namespace.name, handler_count=namespace.handler_count, create_time=timestamp(namespace.create_time)
    )
