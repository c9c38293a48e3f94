"""`@step`: declare a function as the handler of a step handler name that the worker subscribes to."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from baton.worker._context import StepContext

#: What a handler may return: the step's result (a JSON object) or None for an empty one.
StepResult = Mapping[str, Any] | None
AsyncStepFunction = Callable[["StepContext"], Awaitable[StepResult]]
SyncStepFunction = Callable[["StepContext"], StepResult]


@dataclass(frozen=True)
class StepHandler:
    """A step handler: the name workers subscribe to (a step template's `step_handler`) and the function that
    runs one attempt. Async functions run on the event loop, plain ones in the worker's thread pool."""

    name: str
    function: Callable[[StepContext], Any]
    is_async: bool

    def __call__(self, ctx: StepContext) -> Any:
        """Call the function (a test can run a handler directly)."""
        return self.function(ctx)


def step(name: str) -> Callable[[Callable[[StepContext], Any]], StepHandler]:
    """Declare the handler of step handler `name`:

        @step("payments.charge")
        async def charge(ctx: StepContext) -> dict[str, Any]:
            return {"charge_id": await gateway.charge(ctx.context["order_id"])}

    Return the result (a JSON object, or None); raise `RetryableError` or `PermanentError` to fail the attempt.
    """
    if not name:
        raise ValueError("a step handler needs a name")

    def decorate(function: Callable[[StepContext], Any]) -> StepHandler:
        return StepHandler(name=name, function=function, is_async=inspect.iscoroutinefunction(function))

    return decorate


def handler_table(handlers: Any) -> dict[str, StepHandler]:
    """The handlers by name; refuses duplicates and functions that were not decorated with `@step`."""
    table: dict[str, StepHandler] = {}
    for handler in handlers:
        if not isinstance(handler, StepHandler):
            raise TypeError(f'{handler!r} is not a step handler: decorate it with @step("name")')
        if handler.name in table:
            raise ValueError(f"two handlers for step handler {handler.name!r}")
        table[handler.name] = handler
    if not table:
        raise ValueError("a worker needs at least one step handler")
    return table
