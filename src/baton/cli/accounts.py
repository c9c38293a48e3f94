"""`baton users` and `baton keys`: manage users, service accounts and their API keys (needs `users.admin`)."""

from __future__ import annotations

import datetime
import re
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from baton.cli import _output as out
from baton.cli._client_cli import CLI, EXIT_CODES_HELP, CliError, client_command
from baton.cli._common import EXIT_NOT_FOUND, EXIT_USAGE

if TYPE_CHECKING:
    from baton.client import Client
    from baton_betterproto.baton.v1 import ApiKey, RoleBinding, User

users_app = typer.Typer(help="Manage users and service accounts.", epilog=EXIT_CODES_HELP, no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", epilog=EXIT_CODES_HELP, no_args_is_help=True)

RolesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--role", "-r", help="ROLE or ROLE:NAMESPACE (admin, operator, developer, worker, viewer); repeatable."
    ),
]
UserRef = Annotated[str, typer.Argument(metavar="USER", help="The user's ID or username.", show_default=False)]
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def role_bindings(values: list[str]) -> list[RoleBinding]:
    """RoleBindings from `ROLE[:NAMESPACE]` strings."""
    from baton_betterproto.baton.v1 import Role, RoleBinding

    bindings = []
    for value in values:
        role, _, namespace = value.partition(":")
        try:
            bindings.append(RoleBinding(role=Role[role.strip().upper()], namespace=namespace.strip()))
        except KeyError:
            allowed = ", ".join(r.name.lower() for r in Role if r.name != "UNSPECIFIED")
            raise CliError(f"--role {value!r}: unknown role (one of {allowed})", EXIT_USAGE) from None
    return bindings


def _password(from_stdin: bool, prompt: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    if prompt:
        return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    return ""


def _bindings_text(user: User) -> str:
    return ", ".join(f"{b.role.name.lower()}{':' + b.namespace if b.namespace else ''}" for b in user.role_bindings)


def _user_rows(users: list[User]) -> list[list[str]]:
    return [
        [
            u.id,
            u.username,
            u.display_name or "-",
            u.kind.name.lower().replace("_", " "),
            _bindings_text(u) or "-",
            "disabled" if u.disabled else "enabled",
            out.when(u.create_time),
        ]
        for u in users
    ]


_USER_COLUMNS = ["id", "username", "display name", "kind", "roles", "status", "created"]


def _show_users(cli: CLI, users: list[User]) -> None:
    if cli.json:
        out.emit_json(users[0] if len(users) == 1 else users)
    else:
        out.show(out.table(None, _USER_COLUMNS, _user_rows(users)))


@users_app.command("create")
@client_command()
def create_user(
    cli: CLI,
    username: Annotated[str, typer.Argument(help="Login name.", show_default=False)],
    display_name: Annotated[str, typer.Option(help="Name shown to people.")] = "",
    service: Annotated[
        bool, typer.Option("--service", help="A service account (no password) instead of a human.")
    ] = False,
    roles: RolesOption = None,
    password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin (else prompted).")] = False,
) -> None:
    """Create a human user (with a password) or a service account (`--service`, API keys only)."""
    from baton_betterproto.baton.v1 import User, UserKind

    user = User(
        username=username,
        display_name=display_name,
        kind=UserKind.SERVICE_ACCOUNT if service else UserKind.HUMAN,
        role_bindings=role_bindings(roles or []),
    )
    password = _password(password_stdin, prompt=not service)
    with cli.connect() as client:
        _show_users(cli, [client.users.create(user, password=password)])


@users_app.command("get")
@client_command()
def get_user(cli: CLI, user: UserRef) -> None:
    """Show a user."""
    with cli.connect() as client:
        _show_users(cli, [client.users.get(_user_id(client, user))])


@users_app.command("list")
@client_command()
def list_users(cli: CLI, show_disabled: Annotated[bool, typer.Option(help="Include disabled users.")] = False) -> None:
    """List users."""
    found: list[User] = []
    with cli.connect() as client:
        token = ""
        while True:
            page = client.users.list(page_token=token, show_disabled=show_disabled)
            found.extend(page.users)
            token = page.next_page_token
            if not token:
                break
    if cli.json:
        out.emit_json(found)
    else:
        out.show(out.table(None, _USER_COLUMNS, _user_rows(found)))


@users_app.command("update")
@client_command()
def update_user(
    cli: CLI,
    user_ref: UserRef,
    display_name: Annotated[str | None, typer.Option(help="New display name.")] = None,
    roles: RolesOption = None,
    disabled: Annotated[bool | None, typer.Option("--disable/--enable", help="Disable or enable.")] = None,
    password_stdin: Annotated[bool, typer.Option(help="Set a new password read from stdin.")] = False,
) -> None:
    """Change a user's display name, roles (`--role` replaces them all), status or password."""
    from baton_betterproto.baton.v1 import User

    user, mask = User(), list[str]()
    if display_name is not None:
        user.display_name, mask = display_name, [*mask, "display_name"]
    if roles is not None:
        user.role_bindings, mask = role_bindings(roles), [*mask, "role_bindings"]
    if disabled is not None:
        user.disabled, mask = disabled, [*mask, "disabled"]
    password = _password(password_stdin, prompt=False)
    if not mask and not password:
        raise CliError("nothing to change: give --display-name, --role, --disable/--enable or --password-stdin", 2)
    with cli.connect() as client:
        user.id = _user_id(client, user_ref)
        _show_users(cli, [client.users.update(user, mask, password=password)])


@users_app.command("delete")
@client_command(output=False)
def delete_user(
    cli: CLI, user: UserRef, yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False
) -> None:
    """Delete a user (its API keys and tokens stop working)."""
    if not yes:
        typer.confirm(f"Delete user {user}?", abort=True)
    with cli.connect() as client:
        client.users.delete(_user_id(client, user))
    typer.echo(f"deleted user {user}")


def _expire_time(expires_in: str | None) -> datetime.datetime | None:
    if not expires_in:
        return None
    match = _DURATION.match(expires_in.strip())
    if match is None:
        raise CliError(f"--expires-in {expires_in!r}: use a number and a unit, e.g. 90d, 12h, 30m", EXIT_USAGE)
    delta = datetime.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    return datetime.datetime.now(datetime.UTC) + delta


def _key_rows(keys: list[ApiKey]) -> Iterator[list[str]]:
    for key in keys:
        state = "revoked" if key.revoke_time else "expired" if _past(key.expire_time) else "active"
        yield [
            key.id,
            key.display_name or "-",
            key.prefix,
            state,
            out.when(key.create_time),
            out.when(key.expire_time),
            out.when(key.last_used_time),
        ]


def _past(moment: datetime.datetime | None) -> bool:
    return moment is not None and moment <= datetime.datetime.now(datetime.UTC)


def _user_id(client: Client, user: str) -> str:
    """The ID of `user`, given as an ID or a username."""
    if _UUID.match(user):
        return user
    token = ""
    while True:
        page = client.users.list(page_token=token, show_disabled=True)
        for candidate in page.users:
            if candidate.username == user:
                return candidate.id
        token = page.next_page_token
        if not token:
            raise CliError(f"no user named {user!r}", EXIT_NOT_FOUND)


def _all_keys(client: Client, user_id: str, show_revoked: bool) -> list[ApiKey]:
    found: list[ApiKey] = []
    token = ""
    while True:
        page = client.users.list_api_keys(user_id, page_token=token, show_revoked=show_revoked)
        found.extend(page.api_keys)
        token = page.next_page_token
        if not token:
            return found


@keys_app.command("create")
@client_command()
def create_key(
    cli: CLI,
    user: UserRef,
    name: Annotated[str, typer.Option("--name", help="A name for the key.")] = "",
    expires_in: Annotated[str | None, typer.Option(help="Lifetime such as 90d, 12h or 30m (default: none).")] = None,
) -> None:
    """Create an API key for a user and print it. The key is shown only this once: store it now."""
    expire_time = _expire_time(expires_in)
    with cli.connect() as client:
        user_id = _user_id(client, user)
        response = client.users.create_api_key(user_id, name, expire_time=expire_time)
    if cli.json:
        out.emit_json(response)
        return
    key: Any = response.api_key
    typer.echo(f"created API key {key.id if key else ''} for user {user_id}. The key (shown only once):", err=True)
    typer.echo(response.key)
    typer.echo("Use it with --api-key, BATON_API_KEY, or `baton login --api-key`.", err=True)


@keys_app.command("list")
@client_command()
def list_keys(
    cli: CLI, user: UserRef, show_revoked: Annotated[bool, typer.Option(help="Include revoked keys.")] = False
) -> None:
    """List a user's API keys (never their secrets)."""
    with cli.connect() as client:
        found = _all_keys(client, _user_id(client, user), show_revoked)
    if cli.json:
        out.emit_json(found)
        return
    columns = ["id", "name", "prefix", "state", "created", "expires", "last used"]
    out.show(out.table(None, columns, _key_rows(found)) if found else "[dim]no API keys[/]")


@keys_app.command("revoke")
@client_command()
def revoke_key(cli: CLI, user: UserRef, key_id: Annotated[str, typer.Argument(help="The key's ID.")]) -> None:
    """Revoke one of a user's API keys (revoking it again is a no-op)."""
    with cli.connect() as client:
        user_id = _user_id(client, user)
        if not any(key.id == key_id for key in _all_keys(client, user_id, show_revoked=True)):
            raise CliError(f"user {user_id} has no API key {key_id}", EXIT_NOT_FOUND)
        revoked = client.users.revoke_api_key(key_id)
    if cli.json:
        out.emit_json(revoked)
    else:
        out.show(f"revoked API key {revoked.id} ({revoked.prefix}) of user {user_id}")
