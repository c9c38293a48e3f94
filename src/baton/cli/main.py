"""Entry point of the `baton` console script.

`baton serve` goes straight to the server without importing the typer application and the client it carries
(about a tenth of the server's start-up time); every other command goes through the typer app in cli/app.py.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Run the command named on the command line."""
    if sys.argv[1:] == ["serve"]:
        from baton.cli.serve import serve

        sys.exit(serve())
    from baton.cli.app import app

    app()
