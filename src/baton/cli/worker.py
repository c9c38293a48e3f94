"""`baton worker run MODULE:ATTR`: import a worker factory (like uvicorn imports an app) and run its Worker."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from baton.cli._client_cli import CLI, EXIT_CODES_HELP, CliError, client_command
from baton.cli._common import EXIT_USAGE

if TYPE_CHECKING:
    from baton.client import AsyncClient
    from baton.worker import Worker

worker_app = typer.Typer(help="Run workers.", epilog=EXIT_CODES_HELP, no_args_is_help=True)


def load_factory(spec: str) -> Callable[[AsyncClient], Any]:
    """The callable named by `module.path:attribute`, imported with the current directory on sys.path."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise CliError(f"{spec!r}: expected MODULE:ATTRIBUTE, e.g. examples.shop.worker:build_worker", EXIT_USAGE)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise CliError(f"cannot import {module_name!r}: no such module (from {os.getcwd()})", EXIT_USAGE) from None
        raise CliError(f"importing {module_name!r} failed: {type(error).__name__}: {error}", EXIT_USAGE) from None
    except Exception as error:  # noqa: BLE001 - the user's module failed to import: one line, no traceback
        raise CliError(f"importing {module_name!r} failed: {type(error).__name__}: {error}", EXIT_USAGE) from None
    factory = module
    for part in attribute.split("."):
        if not hasattr(factory, part):
            raise CliError(f"module {module_name!r} has no attribute {attribute!r}", EXIT_USAGE)
        factory = getattr(factory, part)
    if not callable(factory):
        raise CliError(f"{spec} is not callable: expected build_worker(client) -> Worker", EXIT_USAGE)
    return factory


async def _build(factory: Callable[[AsyncClient], Any], client: AsyncClient) -> Worker:
    from baton.worker import Worker

    try:
        built = factory(client)
        if inspect.isawaitable(built):
            built = await built
    except Exception as error:  # noqa: BLE001 - the user's factory failed: one line, no traceback
        raise CliError(f"building the worker failed: {type(error).__name__}: {error}") from None
    if not isinstance(built, Worker):
        raise CliError(f"the factory returned {type(built).__name__}, not a baton.worker.Worker", EXIT_USAGE)
    return built


async def _run(cli: CLI, factory: Callable[[AsyncClient], Any], max_concurrency: int | None) -> None:
    from baton.eventloop import loop_name

    client = await cli.connect_async()
    try:
        worker = await _build(factory, client)
        if max_concurrency is not None:
            worker.max_concurrency = max_concurrency
        typer.echo(
            f"worker {worker.worker_id} serving {', '.join(sorted(worker.handlers))} in {worker.namespace} "
            f"on {cli.target} (up to {worker.max_concurrency} steps at once, {loop_name(asyncio.get_running_loop())} "
            "event loop); Ctrl-C or SIGTERM stops it",
            err=True,
        )
        await worker.run()
    finally:
        client.close()
    typer.echo("worker stopped", err=True)


@worker_app.command("run")
@client_command(output=False)
def run(
    cli: CLI,
    spec: Annotated[
        str, typer.Argument(metavar="MODULE:ATTR", help="A callable build_worker(client) -> Worker (sync or async).")
    ],
    max_concurrency: Annotated[
        int | None, typer.Option(min=1, help="Override the worker's max_concurrency (steps at once).")
    ] = None,
    log_format: Annotated[str, typer.Option(help="console or json.")] = "console",
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    event_loop: Annotated[
        str,
        typer.Option(
            envvar="BATON_EVENT_LOOP", help="auto (uvloop when installed), uvloop (or refuse to start) or asyncio."
        ),
    ] = "auto",
) -> None:
    """Run a worker until SIGTERM or SIGINT, which drain it gracefully.

    MODULE is imported with the current directory on sys.path; ATTR is called with a connected AsyncClient and
    returns a baton.worker.Worker. Workers should use an API key (--api-key or BATON_API_KEY): the access token of
    a stored `baton login` is not refreshed during the run.
    """
    from baton.eventloop import EVENT_LOOP_CHOICES, EventLoopUnavailable, loop_factory
    from baton.observability.logging import configure_logging

    choice = next((c for c in EVENT_LOOP_CHOICES if c == event_loop.lower()), None)
    if choice is None:
        raise CliError(f"--event-loop: {event_loop!r} is not one of {', '.join(EVENT_LOOP_CHOICES)}", EXIT_USAGE)
    try:
        factory_of_loop = loop_factory(choice)
    except EventLoopUnavailable as error:
        raise CliError(f"--event-loop: {error}", EXIT_USAGE) from None
    factory = load_factory(spec)
    configure_logging(log_format, log_level)
    with asyncio.Runner(loop_factory=factory_of_loop) as runner:
        runner.run(_run(cli, factory, max_concurrency))
