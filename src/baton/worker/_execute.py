"""Run one attempt: bind the task to logs and trace, call the handler (a sync one in the thread pool), and turn what
it returned or raised into a StepCompletion or StepFailure."""

from __future__ import annotations

import asyncio
import contextvars
import traceback
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from typing import Any

import structlog
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from baton.client import step_completion, step_failure
from baton.worker._context import StepContext
from baton.worker._errors import StepError
from baton.worker._step import StepHandler
from baton_betterproto.baton.v1 import StepCompletion, StepFailure

#: Longest traceback kept in a failure's details.
MAX_TRACEBACK = 8000


@contextmanager
def step_scope(ctx: StepContext, tracer: trace.Tracer) -> Iterator[Any]:
    """Bind the task and step to structlog's contextvars and open a span that is a child of the task's trace."""
    with structlog.contextvars.bound_contextvars(
        task_id=ctx.task_id,
        step_id=ctx.step_id,
        step=ctx.step_name,
        attempt=ctx.attempt,
        request_id=ctx.request_id,
        correlation_id=ctx.correlation_id,
    ):
        parent = propagate.extract(dict(ctx.trace_context))
        attributes: dict[str, AttributeValue] = {
            "baton.task_id": ctx.task_id,
            "baton.step_id": ctx.step_id,
            "baton.step": ctx.step_name,
            "baton.step_handler": ctx.step_handler,
            "baton.attempt": ctx.attempt,
            "baton.namespace": ctx.namespace,
        }
        with tracer.start_as_current_span(
            f"step {ctx.step_handler}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            yield span


async def execute(
    handler: StepHandler, ctx: StepContext, executor: Executor, tracer: trace.Tracer
) -> StepCompletion | StepFailure:
    """Run `handler` on `ctx` and return the outcome to report. asyncio.CancelledError passes through."""
    with step_scope(ctx, tracer) as span:
        try:
            if handler.is_async:
                result = await handler.function(ctx)
            else:
                call = contextvars.copy_context().run  # the thread sees the bound logs and the span
                result = await asyncio.get_running_loop().run_in_executor(executor, call, handler.function, ctx)
            outcome: StepCompletion | StepFailure = _completion(ctx, result)
        except StepError as error:
            outcome = step_failure(
                ctx.lease,
                error.error_type,
                error.message,
                retryable=error.retryable,
                retry_after=getattr(error, "retry_after", None),
                details=error.details,
            )
            ctx.logger.info("step failed", error_type=error.error_type, retryable=error.retryable, error=error.message)
        except Exception as error:  # any other error is a retryable failure of this attempt
            outcome = step_failure(
                ctx.lease,
                type(error).__name__,
                str(error),
                retryable=True,
                details={"traceback": "".join(traceback.format_exception(error))[-MAX_TRACEBACK:]},
            )
            ctx.logger.warning("step raised", error_type=type(error).__name__, exc_info=error)
        if span is not None and isinstance(outcome, StepFailure):
            span.set_status(Status(StatusCode.ERROR, f"{outcome.error_type}: {outcome.error_message}"))
        return outcome


def _completion(ctx: StepContext, result: Any) -> StepCompletion | StepFailure:
    if result is not None and not isinstance(result, dict):
        try:
            result = dict(result)
        except (TypeError, ValueError):
            return step_failure(
                ctx.lease,
                "InvalidResult",
                f"a step returns a dict or None, not {type(result).__name__}",
                retryable=False,
            )
    try:
        return step_completion(ctx.lease, result)
    except (TypeError, ValueError) as error:
        return step_failure(ctx.lease, "InvalidResult", f"the result is not JSON: {error}", retryable=False)
