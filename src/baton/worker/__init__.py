"""The Baton worker SDK: declare step handlers with `@step`, run them with a `Worker`.

    from baton.client import AsyncClient
    from baton.worker import PermanentError, RetryableError, StepContext, Worker, step

    @step("payments.charge")
    async def charge(ctx: StepContext) -> dict[str, object]:
        ...

    async with await AsyncClient.connect(target, api_key=key) as client:
        await Worker(client, namespace="shop", handlers=[charge]).run()

The worker long-polls for leases, runs up to `max_concurrency` steps at once (sync handlers in a thread pool),
heartbeats them, batches their outcomes and shuts down gracefully on SIGTERM.
"""

from baton.worker._context import StepContext
from baton.worker._errors import PermanentError, RetryableError, StepError
from baton.worker._step import StepHandler, StepResult, step
from baton.worker._worker import Worker

__all__ = [
    "PermanentError",
    "RetryableError",
    "StepContext",
    "StepError",
    "StepHandler",
    "StepResult",
    "Worker",
    "step",
]
