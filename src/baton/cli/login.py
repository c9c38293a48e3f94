"""`baton login`, `baton logout` and `baton whoami`: the credentials the other commands use."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from baton.cli import _credentials as stored
from baton.cli import _output as out
from baton.cli._client_cli import CLI, CliError, client_command
from baton.cli._common import EXIT_USAGE


@client_command(output=False)
def login(
    cli: CLI,
    username: Annotated[str | None, typer.Option("--username", "-u", help="User name (else prompted).")] = None,
    password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin (else prompted, hidden).")] = False,
) -> None:
    """Log in to the target and store the tokens (refreshed by later commands) in
    $XDG_CONFIG_HOME/baton/credentials.json, mode 0600. With --api-key, check the key and store it instead."""
    from baton.client import Client

    if cli.api_key:
        with Client.connect(cli.target, tls=cli.tls_config(), api_key=cli.api_key) as client:
            who = client.auth.who_am_i()
        path = stored.store(cli.target, {"api_key": cli.api_key, "username": who.user.username if who.user else ""})
        typer.echo(f"API key of {who.user.username if who.user else '?'} stored for {cli.target} in {path}")
        return
    if username is None:
        username = str(typer.prompt("Username"))
    password = sys.stdin.readline().rstrip("\n") if password_stdin else str(typer.prompt("Password", hide_input=True))
    if not username or not password:
        raise CliError("a username and a password are needed", EXIT_USAGE)
    with Client.connect(cli.target, tls=cli.tls_config()) as client:
        response = client.auth.login(username, password)
    path = stored.store(cli.target, stored.token_entry(response, username))
    typer.echo(f"logged in to {cli.target} as {username}; tokens stored in {path}")


@client_command(output=False)
def logout(cli: CLI) -> None:
    """Revoke the stored refresh token of the target and forget its credentials."""
    from baton.client import BatonError, Client

    entry = stored.forget(cli.target)
    if entry is None:
        typer.echo(f"not logged in to {cli.target}; nothing to do")
        return
    refresh_token = entry.get("refresh_token")
    if refresh_token:
        try:
            with Client.connect(cli.target, tls=cli.tls_config()) as client:
                client.auth.revoke_token(str(refresh_token))
        except BatonError as error:
            typer.echo(
                f"baton: credentials removed, but the server did not revoke the token: {error.message}", err=True
            )
    typer.echo(f"logged out of {cli.target}")


@client_command()
def whoami(cli: CLI) -> None:
    """Show who the credentials belong to and what they may do."""
    with cli.connect() as client:
        who = client.auth.who_am_i()
    if cli.json:
        out.emit_json(who)
        return
    user = who.user
    name = f"{user.username} ({user.id})" if user else "?"
    out.show(f"[bold]{name}[/] via {who.auth_method}", "permissions: " + (", ".join(who.permissions) or "none"))
