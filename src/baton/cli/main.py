"""The `baton` command line."""

from __future__ import annotations

import typer

from baton.about import VERSION
from baton.cli import ops
from baton.cli.admin import admin_app

app = typer.Typer(
    name="baton",
    help="Baton: workflow orchestration over gRPC.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("serve")(ops.serve)
app.command("health")(ops.health)
app.add_typer(ops.migrate_app, name="migrate")
app.add_typer(ops.config_app, name="config")
app.add_typer(admin_app, name="admin")


@app.command("version")
def version() -> None:
    """Print the version."""
    typer.echo(VERSION)


def main() -> None:
    """Entry point of the `baton` console script."""
    app()
