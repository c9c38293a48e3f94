"""Stored logins and how a command finds its credentials.

`baton login` keeps one entry per target in `$XDG_CONFIG_HOME/baton/credentials.json` (`~/.config/baton` by
default): the access and refresh tokens of a Login with the access token's expiry, or an API key. The file is
mode 0600 in a 0700 directory and is replaced atomically.

Precedence: `--api-key` / BATON_API_KEY, else the stored entry of the target (an expired access token is refreshed
with the refresh token, and the rotated tokens are saved), else an error telling how to log in.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from baton.cli._client_cli import CLI, CliError
from baton.cli._common import EXIT_AUTH

if TYPE_CHECKING:
    from baton.client import AsyncClient, Client
    from baton_betterproto.baton.v1 import LoginResponse, RefreshTokenResponse

#: Refresh the access token when it expires within this many seconds.
REFRESH_MARGIN = 30.0
NOT_LOGGED_IN = "not logged in to {target}: run `baton login` or set BATON_API_KEY"


def credentials_path() -> Path:
    """Where logins are stored."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "baton" / "credentials.json"


def load_all() -> dict[str, dict[str, Any]]:
    """Every stored entry by target ({} when there is no file)."""
    path = credentials_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise CliError(f"cannot read {path}: {error}; remove it and run `baton login`", EXIT_AUTH) from None
    return {str(key): value for key, value in data.items() if isinstance(value, dict)} if isinstance(data, dict) else {}


def save_all(entries: dict[str, dict[str, Any]]) -> Path:
    """Write every entry atomically: a 0600 temporary file in the 0700 directory, renamed over the old one."""
    path = credentials_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    descriptor, temporary = tempfile.mkstemp(prefix=".credentials-", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w") as file:  # mkstemp makes it 0600
            json.dump(entries, file, indent=2, sort_keys=True)
            file.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def store(target: str, entry: dict[str, Any]) -> Path:
    """Store (or replace) the entry of `target`."""
    entries = load_all()
    entries[target] = entry
    return save_all(entries)


def forget(target: str) -> dict[str, Any] | None:
    """Remove the entry of `target`; the removed entry, if there was one."""
    entries = load_all()
    entry = entries.pop(target, None)
    if entry is not None:
        save_all(entries)
    return entry


def token_entry(response: LoginResponse | RefreshTokenResponse, username: str) -> dict[str, Any]:
    """The stored form of a Login or RefreshToken response."""
    expiry = response.access_token_expire_time
    return {
        "access_token": response.access_token,
        "refresh_token": response.refresh_token,
        "expiry": expiry.astimezone(datetime.UTC).isoformat() if expiry else None,
        "username": username,
    }


def _expired(entry: dict[str, Any]) -> bool:
    expiry = entry.get("expiry")
    if not expiry:
        return False
    moment = datetime.datetime.fromisoformat(str(expiry))
    return moment - datetime.timedelta(seconds=REFRESH_MARGIN) <= datetime.datetime.now(datetime.UTC)


def _refresh(cli: CLI, entry: dict[str, Any]) -> dict[str, Any]:
    from baton.client import Client, UnauthenticatedError

    with Client.connect(cli.target, tls=cli.tls_config()) as anonymous:
        try:
            response = anonymous.auth.refresh_token(str(entry.get("refresh_token", "")))
        except UnauthenticatedError:
            raise CliError(f"the login to {cli.target} has expired: run `baton login` again", EXIT_AUTH) from None
    fresh = token_entry(response, str(entry.get("username", "")))
    store(cli.target, fresh)
    return fresh


def resolve(cli: CLI) -> tuple[str | None, str | None]:
    """The command's credentials: (API key, None) or (None, access token)."""
    if cli.api_key:
        return cli.api_key, None
    entry = load_all().get(cli.target)
    if entry is None:
        raise CliError(NOT_LOGGED_IN.format(target=cli.target), EXIT_AUTH)
    if entry.get("api_key"):
        return str(entry["api_key"]), None
    if not entry.get("access_token"):
        raise CliError(NOT_LOGGED_IN.format(target=cli.target), EXIT_AUTH)
    if _expired(entry):
        entry = _refresh(cli, entry)
    return None, str(entry["access_token"])


def connect(cli: CLI) -> Client:
    """A sync client for the command, with its credentials."""
    from baton.client import Client

    api_key, token = resolve(cli)
    return Client.connect(cli.target, tls=cli.tls_config(), api_key=api_key, token=token)


async def connect_async(cli: CLI) -> AsyncClient:
    """An asyncio client for the command, with its credentials (refreshed through the sync client if due)."""
    from baton.client import AsyncClient

    api_key, token = resolve(cli)
    return await AsyncClient.connect(cli.target, tls=cli.tls_config(), api_key=api_key, token=token)
