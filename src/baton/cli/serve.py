"""`baton serve`, kept apart from the typer application so that starting the server loads no CLI code."""

from __future__ import annotations

import sys

from baton.cli._exit import EXIT_FAILURE, EXIT_USAGE


def serve() -> int:
    """Load the configuration (one line per problem and exit code 2 when it is bad), then run the server on the
    configured event loop until SIGTERM or SIGINT; the exit code of the server."""
    from baton.config import ConfigError, load_config

    try:
        config = load_config()
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    from baton.eventloop import run as run_loop
    from baton.server.app import run

    try:
        return run_loop(run(config), config.server.event_loop)
    except OSError as exc:
        print(
            f"baton: cannot serve on {config.server.host}:{config.server.port}: {exc.strerror or exc}", file=sys.stderr
        )
        return EXIT_FAILURE
