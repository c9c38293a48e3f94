"""`baton handlers`: register handler definitions from YAML or JSON files, list and show them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from baton.cli import _output as out
from baton.cli._client_cli import CLI, EXIT_CODES_HELP, CliError, client_command
from baton.cli._common import EXIT_USAGE
from baton.cli._files import read_data

if TYPE_CHECKING:
    from baton_betterproto.baton.v1 import Handler

handlers_app = typer.Typer(help="Register and inspect handlers.", epilog=EXIT_CODES_HELP, no_args_is_help=True)


def load_handler(path: Path) -> Handler:
    """The Handler defined in `path` (the Handler message in proto3 JSON form, or `{"handler": {...}}`)."""
    from google.protobuf import json_format

    from baton.v1 import handlers_pb2
    from baton_betterproto.baton.v1 import Handler

    data = read_data(path)
    if isinstance(data, dict) and set(data) == {"handler"}:
        data = data["handler"]
    if not isinstance(data, dict):
        raise CliError(f"{path}: expected a handler definition (a mapping), found {type(data).__name__}", EXIT_USAGE)
    try:
        message = json_format.ParseDict(data, handlers_pb2.Handler())
    except json_format.ParseError as error:
        first, *rest = str(error).splitlines()
        raise CliError(f"{path}: {first}", EXIT_USAGE, [line.strip() for line in rest if line.strip()]) from None
    return Handler.parse(message.SerializeToString())


def _handler_rows(handlers: list[Handler]) -> list[list[str]]:
    return [
        [h.namespace, h.name, h.version, str(len(h.steps)), out.when(h.create_time), h.description or ""]
        for h in handlers
    ]


def show_handler(handler: Handler) -> None:
    """Print a handler and its steps as people read them."""
    header = f"[bold]{handler.namespace}/{handler.name}[/] version {handler.version}"
    if handler.description:
        header += f" — {handler.description}"
    rows = []
    for step in handler.steps:
        policy = step.retry_policy
        rows.append(
            [
                step.name,
                step.step_handler,
                ", ".join(step.depends_on) or "-",
                str(policy.max_attempts) if policy else "-",
                out.duration(policy.initial_backoff) if policy else "-",
                out.duration(step.lease_timeout),
                str(step.priority),
            ]
        )
    columns = ["step", "step handler", "depends on", "attempts", "backoff", "lease", "priority"]
    out.show(header, out.table(None, columns, rows), f"[dim]registered {out.when(handler.create_time)}[/]")


@handlers_app.command("register")
@client_command()
def register(
    cli: CLI,
    file: Annotated[
        Path, typer.Option("--file", "-f", help="Handler definition: YAML, or JSON (.json).", show_default=False)
    ],
) -> None:
    """Register the handler defined in FILE (the Handler message of protos/baton/v1/handlers.proto; field names
    in snake_case or camelCase). Registering the same definition again is a no-op; a different definition under
    an existing version exits 6."""
    handler = load_handler(file)
    with cli.connect() as client:
        stored = client.handlers.register(handler)
    if cli.json:
        out.emit_json(stored)
        return
    out.show(
        f"registered [bold]{stored.namespace}/{stored.name}[/] version {stored.version} ({len(stored.steps)} steps)"
    )


@handlers_app.command("list")
@client_command()
def list_handlers(
    cli: CLI,
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="One namespace (default: every one you may read).")
    ] = None,
    latest_only: Annotated[bool, typer.Option("--latest-only", help="Only the latest version of each.")] = False,
) -> None:
    """List handlers, with their versions."""
    found: list[Handler] = []
    with cli.connect() as client:
        if namespace is None:
            namespaces, token = list[str](), ""
            while True:
                page = client.handlers.list_namespaces(page_token=token)
                namespaces.extend(item.name for item in page.namespaces)
                token = page.next_page_token
                if not token:
                    break
        else:
            namespaces = [namespace]
        for name in namespaces:
            token = ""
            while True:
                response = client.handlers.list(name, latest_only=latest_only, page_token=token)
                found.extend(response.handlers)
                token = response.next_page_token
                if not token:
                    break
    if cli.json:
        out.emit_json(found)
        return
    columns = ["namespace", "name", "version", "steps", "registered", "description"]
    out.show(out.table(None, columns, _handler_rows(found)) if found else "[dim]no handlers[/]")


@handlers_app.command("get")
@client_command()
def get(
    cli: CLI,
    namespace: Annotated[str, typer.Argument(help="The handler's namespace.")],
    name: Annotated[str, typer.Argument(help="The handler's name.")],
    version: Annotated[str, typer.Option("--version", "-v", help="A version (default: the latest).")] = "",
) -> None:
    """Show a handler version and its steps."""
    with cli.connect() as client:
        handler = client.handlers.get(namespace, name, version)
    if cli.json:
        out.emit_json(handler)
        return
    show_handler(handler)
