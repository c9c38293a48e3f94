"""Helpers shared by the CLI commands: configuration loading and error output."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from baton.cli._exit import (
    EXIT_AUTH,
    EXIT_CONFLICT,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_TASK_FAILED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)
from baton.config import Config, ConfigError, load_config

__all__ = [
    "EXIT_AUTH",
    "EXIT_CONFLICT",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_TASK_FAILED",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "config_or_exit",
    "fail",
]


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
