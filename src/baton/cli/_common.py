"""Helpers shared by the CLI commands: configuration loading and error output."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from baton.config import Config, ConfigError, load_config

#: Exit codes that mean something to scripts (the README has the table; `_client_cli.exit_code` maps errors).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_NOT_FOUND = 4
EXIT_AUTH = 5
EXIT_CONFLICT = 6
EXIT_TASK_FAILED = 7
EXIT_INTERRUPTED = 130


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print one clear line to stderr and exit."""
    typer.echo(f"baton: {message}", err=True)
    raise typer.Exit(code)


def config_or_exit() -> Config:
    """Load the configuration, or print one line per problem and exit 2."""
    try:
        return load_config()
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        raise typer.Exit(EXIT_USAGE) from None
