"""What every command that talks to a server shares: the connection options, the error boundary, exit codes.

`@client_command` adds `--target`, `--api-key`, `--tls`, `--ca-cert`, `--server-name` (and `--output` unless told
otherwise) to a command, hands the command a `CLI` holding them, and turns every expected failure into one line on
stderr and an exit code that means something:

    0 ok · 1 failure · 2 bad input · 3 server unavailable or busy · 4 not found · 5 not authenticated or not allowed
    6 conflict (exists, wrong state, stale etag) · 7 the watched task failed or was cancelled · 130 interrupted
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from baton.cli._common import (
    EXIT_AUTH,
    EXIT_CONFLICT,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)

if TYPE_CHECKING:
    from baton.client import AsyncClient, BatonError, Client, TLSConfig

EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 1 failure, 2 bad input, 3 server unavailable or busy, 4 not found, "
    "5 not authenticated or not allowed, 6 conflict (exists, wrong state, stale etag), "
    "7 the watched task failed or was cancelled, 130 interrupted."
)
DEFAULT_TARGET = "127.0.0.1:50051"


class Output(StrEnum):
    """How results are printed."""

    TABLE = "table"
    JSON = "json"


class CliError(Exception):
    """A failure the CLI itself detected (bad input, not logged in): one line and an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILURE, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details or []


@dataclass(frozen=True, slots=True)
class CLI:
    """The connection options and output format of one command run."""

    target: str
    api_key: str | None
    tls: bool
    ca_cert: Path | None
    server_name: str | None
    output: Output = Output.TABLE

    @property
    def json(self) -> bool:
        """Whether to print JSON for scripts."""
        return self.output is Output.JSON

    def tls_config(self) -> bool | TLSConfig:
        """What `Client.connect(tls=...)` takes."""
        from baton.client import TLSConfig

        if not (self.tls or self.ca_cert or self.server_name):
            return False
        return TLSConfig(ca_cert_file=self.ca_cert, server_name=self.server_name)

    def connect(self) -> Client:
        """A sync client with the resolved credentials (see `_credentials.resolve`)."""
        from baton.cli._credentials import connect

        return connect(self)

    async def connect_async(self) -> AsyncClient:
        """An asyncio client with the same credentials."""
        from baton.cli._credentials import connect_async

        return await connect_async(self)


def exit_code(error: BatonError) -> int:
    """The exit code for a failed call."""
    import grpc

    from baton.client import RateLimitedError

    if isinstance(error, RateLimitedError):
        return EXIT_UNAVAILABLE
    by_code = {
        grpc.StatusCode.INVALID_ARGUMENT: EXIT_USAGE,
        grpc.StatusCode.OUT_OF_RANGE: EXIT_USAGE,
        grpc.StatusCode.UNAVAILABLE: EXIT_UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_UNAVAILABLE,
        grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND,
        grpc.StatusCode.UNAUTHENTICATED: EXIT_AUTH,
        grpc.StatusCode.PERMISSION_DENIED: EXIT_AUTH,
        grpc.StatusCode.ALREADY_EXISTS: EXIT_CONFLICT,
        grpc.StatusCode.FAILED_PRECONDITION: EXIT_CONFLICT,
        grpc.StatusCode.ABORTED: EXIT_CONFLICT,
    }
    return by_code.get(error.code, EXIT_FAILURE)


def _say(message: str, details: list[str], code: int) -> NoReturn:
    typer.echo(f"baton: {message}", err=True)
    for line in details:
        typer.echo(f"  - {line}", err=True)
    raise typer.Exit(code)


@contextmanager
def error_boundary() -> Iterator[None]:
    """Turn expected failures into one line on stderr (plus field violations) and a meaningful exit code."""
    import yaml

    from baton.client import BatonError, UnauthenticatedError, UnavailableError

    try:
        yield
    except CliError as error:
        _say(error.message, error.details, error.code)
    except UnavailableError as error:
        _say(f"server unavailable: {error.message}", [], EXIT_UNAVAILABLE)
    except BatonError as error:
        message = error.message or error.code.name
        if error.request_id:
            message += f" (request {error.request_id})"
        if isinstance(error, UnauthenticatedError):
            message += "; run `baton login` or set BATON_API_KEY"
        details = [f"{v.field}: {v.description}" if v.field else v.description for v in error.field_violations]
        _say(message, details, exit_code(error))
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        _say(f"invalid input: {one_line(str(error))}", [], EXIT_USAGE)
    except BrokenPipeError:
        # The reader went away (`baton tasks list | head`): stop quietly, without Python's complaint at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(EXIT_FAILURE) from None
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        _say(f"{where}{error.strerror or error}", [], EXIT_USAGE if error.filename else EXIT_FAILURE)
    except KeyboardInterrupt:
        _say("interrupted", [], EXIT_INTERRUPTED)


def one_line(text: str) -> str:
    """`text` with its lines joined, for messages that must fit on one line."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


TargetOption = Annotated[
    str, typer.Option("--target", envvar="BATON_TARGET", help="Server host:port.", rich_help_panel="Connection")
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="BATON_API_KEY",
        help="API key (else the stored login of `baton login`).",
        show_default=False,
        rich_help_panel="Connection",
    ),
]
TlsOption = Annotated[
    bool, typer.Option("--tls", envvar="BATON_CLIENT_TLS", help="Use TLS (system roots).", rich_help_panel="Connection")
]
CaCertOption = Annotated[
    Path | None,
    typer.Option(
        "--ca-cert",
        envvar="BATON_CA_CERT",
        help="CA bundle to verify the server (implies --tls).",
        rich_help_panel="Connection",
    ),
]
ServerNameOption = Annotated[
    str | None,
    typer.Option("--server-name", help="Name expected in the server certificate.", rich_help_panel="Connection"),
]
OutputOption = Annotated[Output, typer.Option("--output", "-o", help="table for people, json for scripts.")]

_OPTIONS: list[tuple[str, Any, Any]] = [
    ("target", TargetOption, DEFAULT_TARGET),
    ("api_key", ApiKeyOption, None),
    ("tls", TlsOption, False),
    ("ca_cert", CaCertOption, None),
    ("server_name", ServerNameOption, None),
]


def client_command(*, output: bool = True) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the connection options (and `--output`), a `CLI` as its first argument, and the error
    boundary. The command's own parameters keep their order, before the shared ones in `--help`."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = list(inspect.signature(command, eval_str=True).parameters.values())[1:]
        shared = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind, default=default)
            for name, kind, default in _OPTIONS + ([("output", OutputOption, Output.TABLE)] if output else [])
        ]
        names = [name for name, _, _ in _OPTIONS] + (["output"] if output else [])

        @functools.wraps(command)
        def run(**kwargs: Any) -> None:
            settings = {name: kwargs.pop(name) for name in names}
            with error_boundary():
                command(CLI(**settings), **kwargs)

        run.__signature__ = inspect.Signature(own + shared)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in own + shared}
        del run.__wrapped__  # typer must read the signature above, not the command's
        return run

    return decorate
