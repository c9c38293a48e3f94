"""The event loop `baton serve` and `baton worker run` run on: uvloop where it is installed, asyncio's otherwise.

grpc.aio runs on any asyncio loop. uvloop (libuv under asyncio's API) does the loop's own work — scheduling
callbacks, polling, the socket pair grpc.aio wakes the loop through — in C, which is a large part of what a
unary call costs a Python gRPC server: under callgrind a bare grpc.aio server spends 463 k user-space
instructions a call on asyncio's loop and 310 k on uvloop's (`scripts/bench/chain_instructions`). The choice is
`BATON_EVENT_LOOP`: `auto` (uvloop when importable), `uvloop` (refused at start-up when it is not installed) or
`asyncio`. Nothing else in Baton depends on which loop runs; tests run on asyncio's.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

T = TypeVar("T")
EventLoopChoice = Literal["auto", "uvloop", "asyncio"]
EVENT_LOOP_CHOICES: tuple[EventLoopChoice, ...] = ("auto", "uvloop", "asyncio")


class EventLoopUnavailable(Exception):
    """The event loop asked for cannot be had here (uvloop is not installed)."""


def uvloop_available() -> bool:
    """Whether uvloop can be imported (it is not built for Windows)."""
    try:
        importlib.import_module("uvloop")
    except ImportError:
        return False
    return True


def loop_factory(choice: EventLoopChoice) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the loop `choice` names; None for asyncio's default. EventLoopUnavailable when `choice` is
    "uvloop" and it is not installed."""
    if choice == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise EventLoopUnavailable(
                "uvloop is not installed (pip install uvloop; it does not run on Windows)"
            ) from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], choice: EventLoopChoice) -> T:
    """Run `main` to completion on a new loop of the chosen kind, as asyncio.run does (and closes it after)."""
    try:
        factory = loop_factory(choice)
    except BaseException:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """ "uvloop" or "asyncio": the kind of a running loop, for the start-up log line."""
    return "uvloop" if type(loop).__module__.partition(".")[0] == "uvloop" else "asyncio"
