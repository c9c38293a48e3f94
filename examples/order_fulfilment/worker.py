"""The order fulfilment worker: one handler per step of handler.yaml, built on the Baton worker SDK.

`charge_card` is deliberately flaky: about a quarter of its attempts fail with a retryable gateway timeout, which
Baton retries after `retry_after`. `pack` is a plain (sync) function: the worker runs it in its thread pool.

Run it with the CLI (`baton worker run worker:build_worker`) or directly (`python worker.py`); both read
BATON_TARGET (default 127.0.0.1:50051) and BATON_API_KEY.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
from typing import Any

from baton.client import AsyncClient
from baton.worker import PermanentError, RetryableError, StepContext, Worker, step

#: Share of charge attempts that time out (FLAKY_RATE overrides it).
FLAKY_RATE = float(os.environ.get("FLAKY_RATE", "0.25"))


@step("shop.reserve_stock")
async def reserve_stock(ctx: StepContext) -> dict[str, Any]:
    """Hold every item of the order; an empty order can never succeed."""
    items = ctx.context.get("items") or []
    if not items:
        raise PermanentError("the order has no items", error_type="EmptyOrder")
    await asyncio.sleep(random.uniform(0.005, 0.02))  # the warehouse API
    return {"reservation_id": f"res-{ctx.task_id[-8:]}", "items": len(items)}


@step("shop.charge_card")
async def charge_card(ctx: StepContext) -> dict[str, Any]:
    """Charge the order's amount; the gateway times out now and then (a retryable failure)."""
    await asyncio.sleep(random.uniform(0.01, 0.03))
    if random.random() < FLAKY_RATE:
        ctx.logger.info("payment gateway timed out", attempt=ctx.attempt)
        raise RetryableError("payment gateway timed out", retry_after=0.2, details={"gateway": "acme-pay"})
    amount = int(ctx.context.get("amount_cents", 0))
    if amount <= 0:
        raise PermanentError(f"cannot charge {amount} cents", error_type="CardDeclined")
    charge = hashlib.sha256(f"{ctx.task_id}:{amount}".encode()).hexdigest()[:12]
    return {"charge_id": f"ch_{charge}", "amount_cents": amount, "attempts": ctx.attempt}


@step("shop.pack")
def pack(ctx: StepContext) -> dict[str, Any]:
    """Pack the parcel: blocking code, run in the worker's thread pool without stalling the event loop.

    An order with `pack_seconds` in its context packs slowly, heartbeating every second so that a cancellation
    (`baton tasks cancel`) reaches it within about a second instead of a third of the lease timeout."""
    reserved = ctx.dependency_results["reserve_stock"]
    time.sleep(random.uniform(0.01, 0.03))
    started = time.monotonic()
    deadline = started + float(ctx.context.get("pack_seconds", 0))
    while time.monotonic() < deadline:
        if ctx.is_cancelled():
            ctx.logger.info("packing stopped: the order was cancelled")
            raise PermanentError("the order was cancelled while packing", error_type="Cancelled")
        ctx.heartbeat({"packed_seconds": round(time.monotonic() - started, 1)})
        time.sleep(1.0)
    return {"parcel_id": f"pcl-{ctx.task_id[-8:]}", "items": reserved["items"], "weight_kg": 0.4 * reserved["items"]}


@step("shop.ship")
async def ship(ctx: StepContext) -> dict[str, Any]:
    """Book the courier once the card is charged and the parcel packed."""
    parcel = ctx.dependency_results["pack"]
    await asyncio.sleep(random.uniform(0.005, 0.02))
    digits = int(hashlib.sha256(parcel["parcel_id"].encode()).hexdigest(), 16) % 10**10
    return {"tracking_number": f"TRK{digits:010d}", "carrier": "parcelforce"}


@step("shop.notify")
async def notify(ctx: StepContext) -> dict[str, Any]:
    """Tell the customer their order is on its way."""
    tracking = ctx.dependency_results["ship"]["tracking_number"]
    ctx.logger.debug("customer notified", email=ctx.context.get("email"), tracking_number=tracking)
    return {"notified": ctx.context.get("email", ""), "tracking_number": tracking}


def build_worker(client: AsyncClient) -> Worker:
    """The worker `baton worker run worker:build_worker` runs."""
    return Worker(
        client,
        namespace="shop",
        handlers=[reserve_stock, charge_card, pack, ship, notify],
        max_concurrency=int(os.environ.get("WORKER_CONCURRENCY", "50")),
    )


async def main() -> None:
    target = os.environ.get("BATON_TARGET", "127.0.0.1:50051")
    async with await AsyncClient.connect(target, api_key=os.environ.get("BATON_API_KEY")) as client:
        await build_worker(client).run()  # until Ctrl-C or SIGTERM: running steps finish or are handed back


if __name__ == "__main__":
    asyncio.run(main())
