"""The event loop `baton serve` and `baton worker run` choose: uvloop when installed, asyncio's on request."""

from __future__ import annotations

import asyncio
import sys

import pytest

from baton.eventloop import EventLoopUnavailable, loop_factory, loop_name, run


async def running_loop() -> str:
    await asyncio.sleep(0)
    return loop_name(asyncio.get_running_loop())


@pytest.mark.parametrize(("choice", "expected"), [("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_run_uses_the_chosen_loop(choice: str, expected: str) -> None:
    assert run(running_loop(), choice) == expected  # type: ignore[arg-type]


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what importing it does where it is not installed
    assert loop_factory("auto") is None
    assert run(running_loop(), "auto") == "asyncio"
    main = running_loop()
    with pytest.raises(EventLoopUnavailable, match="uvloop is not installed"):
        run(main, "uvloop")
    assert main.cr_frame is None  # closed, not left to warn "never awaited"


def test_loop_name_of_asyncio_default() -> None:
    loop = asyncio.new_event_loop()
    try:
        assert loop_name(loop) == "asyncio"
    finally:
        loop.close()
