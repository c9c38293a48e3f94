"""Closed-loop load: N concurrent callers of AuthService.WhoAmI for a fixed time; prints one JSON line."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import grpc

from baton.v1 import auth_pb2, auth_pb2_grpc


async def run(target: str, api_key: str, concurrency: int, seconds: float, warmup: float) -> dict[str, float]:
    metadata = (("x-api-key", api_key),) if api_key else ()
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        request = auth_pb2.WhoAmIRequest()
        await stub.WhoAmI(request, metadata=metadata, timeout=10)
        measuring = False
        stop_at = time.perf_counter() + warmup + seconds

        async def caller() -> None:
            nonlocal errors
            while True:
                started = time.perf_counter()
                if started >= stop_at:
                    return
                try:
                    await stub.WhoAmI(request, metadata=metadata, timeout=10)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                if measuring:
                    latencies.append(time.perf_counter() - started)

        tasks = [asyncio.create_task(caller()) for _ in range(concurrency)]
        await asyncio.sleep(warmup)
        measuring = True
        began = time.perf_counter()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "calls": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "rps": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


if __name__ == "__main__":
    target, api_key, concurrency, seconds, warmup = sys.argv[1:6]
    result = asyncio.run(run(target, api_key, int(concurrency), float(seconds), float(warmup)))
    print(json.dumps(result))
