"""The `baton` command line: the typer application (`baton.cli.main` is the entry point)."""

from __future__ import annotations

import typer

from baton.about import VERSION
from baton.cli import login, ops
from baton.cli._client_cli import EXIT_CODES_HELP
from baton.cli.accounts import keys_app, users_app
from baton.cli.admin import admin_app
from baton.cli.handlers import handlers_app
from baton.cli.tasks import tasks_app
from baton.cli.worker import worker_app

app = typer.Typer(
    name="baton",
    help=f"Baton: workflow orchestration over gRPC. {EXIT_CODES_HELP}",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("serve")(ops.serve)
app.command("health")(ops.health)
app.add_typer(ops.migrate_app, name="migrate")
app.add_typer(ops.config_app, name="config")
app.add_typer(admin_app, name="admin")
app.command("login")(login.login)
app.command("logout")(login.logout)
app.command("whoami")(login.whoami)
app.add_typer(handlers_app, name="handlers")
app.add_typer(tasks_app, name="tasks")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(worker_app, name="worker")


@app.command("version")
def version() -> None:
    """Print the version."""
    typer.echo(VERSION)
