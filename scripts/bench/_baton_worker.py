"""A minimal Baton worker for scripts/bench/tasks: long-polls a step handler and completes every lease of a poll in
one call, sent without waiting for its answer before polling again.

Usage: python _baton_worker.py TARGET API_KEY NAMESPACE STEP_HANDLER POLLERS
Runs until SIGTERM; prints the number of steps it completed on exit.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import grpc
from google.protobuf import duration_pb2

from baton.v1 import workers_pb2, workers_pb2_grpc


async def poller(
    stub: workers_pb2_grpc.WorkerServiceStub,
    metadata: tuple[tuple[str, str], ...],
    namespace: str,
    handler: str,
    worker_id: str,
    stop: asyncio.Event,
    done: list[int],
) -> None:
    request = workers_pb2.PollStepsRequest(
        namespace=namespace,
        step_handlers=[handler],
        worker_id=worker_id,
        max_steps=100,
        max_wait=duration_pb2.Duration(seconds=1),
    )
    outstanding = asyncio.Semaphore(4)
    reports: set[asyncio.Task[None]] = set()
    while not stop.is_set():
        try:
            polled = await stub.PollSteps(request, metadata=metadata, timeout=5)
        except grpc.aio.AioRpcError:
            if stop.is_set():
                return
            await asyncio.sleep(0.05)
            continue
        if not polled.leases:
            continue
        completions = [
            workers_pb2.StepCompletion(
                lease=workers_pb2.LeaseRef(step_id=lease.step_id, fencing_token=lease.fencing_token)
            )
            for lease in polled.leases
        ]
        # Report without waiting for the answer before polling again (at most a few reports outstanding).
        await outstanding.acquire()
        report = asyncio.create_task(complete(stub, metadata, worker_id, completions, done))
        report.add_done_callback(lambda _: outstanding.release())
        reports.add(report)
        report.add_done_callback(reports.discard)
    if reports:
        await asyncio.wait(reports, timeout=5)


async def complete(
    stub: workers_pb2_grpc.WorkerServiceStub,
    metadata: tuple[tuple[str, str], ...],
    worker_id: str,
    completions: list[workers_pb2.StepCompletion],
    done: list[int],
) -> None:
    await stub.CompleteStep(
        workers_pb2.CompleteStepRequest(worker_id=worker_id, completions=completions), metadata=metadata, timeout=10
    )
    done[0] += len(completions)


async def main(target: str, api_key: str, namespace: str, handler: str, pollers: int) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    done = [0]
    metadata = (("x-api-key", api_key),)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = workers_pb2_grpc.WorkerServiceStub(channel)
        tasks = [
            asyncio.create_task(poller(stub, metadata, namespace, handler, f"bench-{i}", stop, done))
            for i in range(pollers)
        ]
        await stop.wait()
        await asyncio.wait(tasks, timeout=3)
    print(done[0], flush=True)


if __name__ == "__main__":
    target, key, namespace, handler, pollers = sys.argv[1:6]
    asyncio.run(main(target, key, namespace, handler, int(pollers)))
