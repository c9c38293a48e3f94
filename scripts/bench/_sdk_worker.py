"""The bench worker built on the worker SDK (`baton.worker`): a no-op step handler, high concurrency. Same command
line as _baton_worker.py, so scripts/bench/tasks can run either and compare them.

Usage: python _sdk_worker.py TARGET API_KEY NAMESPACE STEP_HANDLER POLLERS
Runs until SIGTERM; prints the number of steps it ran on exit. POLLERS is accepted and ignored (one poll loop
leases up to the free slots, 100 at most, per call).
"""

from __future__ import annotations

import asyncio
import sys

from baton.client import AsyncClient
from baton.observability.logging import configure_logging
from baton.worker import StepContext, Worker, step


async def main(target: str, api_key: str, namespace: str, handler: str) -> None:
    @step(handler)
    async def noop(ctx: StepContext) -> None:
        return None

    async with await AsyncClient.connect(target, api_key=api_key) as client:
        worker = Worker(client, namespace=namespace, handlers=[noop], max_concurrency=500, poll_wait=1.0)
        await worker.run()
    print(worker.steps_started, flush=True)


if __name__ == "__main__":
    configure_logging(level="warning")
    target, key, namespace, handler = sys.argv[1:5]
    asyncio.run(main(target, key, namespace, handler))
