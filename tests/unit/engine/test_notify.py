"""The in-process notifier: wake-ups by key, timeouts, shutdown."""

from __future__ import annotations

import asyncio

from baton.engine.notify import Notifier


async def test_steps_ready_wakes_only_matching_pollers() -> None:
    notifier = Notifier()
    charge = asyncio.create_task(notifier.wait_for_steps("shop", ["charge", "pack"], max_wait=5))
    other = asyncio.create_task(notifier.wait_for_steps("shop", ["ship"], max_wait=0.2))
    await asyncio.sleep(0)
    assert notifier.waiting_pollers() == 2
    notifier.steps_ready("shop", ["pack"])
    assert await charge is True
    assert await other is False
    assert notifier.waiting_pollers() == 0


async def test_task_changed_wakes_watchers() -> None:
    notifier = Notifier()
    watcher = asyncio.create_task(notifier.wait_for_task("t1", max_wait=5))
    await asyncio.sleep(0)
    notifier.task_changed("t2")
    notifier.task_changed("t1")
    assert await watcher is True


async def test_timeout_returns_false() -> None:
    assert await Notifier().wait_for_steps("shop", ["x"], max_wait=0.01) is False


async def test_close_wakes_everyone_and_later_waits_return_at_once() -> None:
    notifier = Notifier()
    poller = asyncio.create_task(notifier.wait_for_steps("shop", ["x"], max_wait=30))
    watcher = asyncio.create_task(notifier.wait_for_task("t", max_wait=30))
    await asyncio.sleep(0)
    notifier.close()
    assert await asyncio.wait_for(poller, 1) is False
    assert await asyncio.wait_for(watcher, 1) is False
    assert await notifier.wait_for_steps("shop", ["x"], max_wait=30) is False
