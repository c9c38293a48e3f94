"""`baton login` / `logout` / `whoami`: stored tokens (0600), refresh on expiry with rotation, revocation."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest

from baton.client import Client, UnauthenticatedError
from tests.cli.conftest import ADMIN_KEY, Baton

PASSWORD = "correct horse battery staple"


def _stored(baton: Baton) -> dict[str, str]:
    data = json.loads((baton.home / "baton" / "credentials.json").read_text())
    return dict(data[baton.target])


async def _login_alice(baton: Baton) -> None:
    created = await baton(
        "users", "create", "alice", "--role", "operator:shop", "--password-stdin", input=PASSWORD + "\n"
    )
    assert created.exit_code == 0, created.stderr
    result = await baton("login", "--username", "alice", "--password-stdin", input=PASSWORD + "\n", api_key=None)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"logged in to {baton.target} as alice")


async def test_login_stores_tokens_privately(baton: Baton) -> None:
    await _login_alice(baton)
    path = baton.home / "baton" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    entry = _stored(baton)
    assert entry["username"] == "alice"
    assert entry["access_token"]
    assert entry["refresh_token"]
    assert entry["expiry"]

    who = await baton.json("whoami", api_key=None)
    assert who["user"]["username"] == "alice"
    assert who["authMethod"] == "jwt"
    denied = await baton("users", "list", api_key=None)
    assert denied.exit_code == 5
    assert denied.stderr.count("\n") == 1


async def test_expired_access_token_is_refreshed_and_the_rotation_saved(baton: Baton) -> None:
    await _login_alice(baton)
    before = _stored(baton)
    path = baton.home / "baton" / "credentials.json"
    data = json.loads(path.read_text())
    data[baton.target]["expiry"] = "2000-01-01T00:00:00+00:00"
    path.write_text(json.dumps(data))

    result = await baton("whoami", api_key=None)
    assert result.exit_code == 0, result.stderr
    after = _stored(baton)
    assert after["refresh_token"] != before["refresh_token"]
    assert after["access_token"] != before["access_token"]
    assert after["expiry"] > "2001"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_refused_refresh_asks_to_log_in_again(baton: Baton) -> None:
    await _login_alice(baton)
    path = baton.home / "baton" / "credentials.json"
    data = json.loads(path.read_text())
    data[baton.target].update(expiry="2000-01-01T00:00:00+00:00", refresh_token="not-a-token")
    path.write_text(json.dumps(data))
    result = await baton("whoami", api_key=None)
    assert result.exit_code == 5
    assert result.stderr == f"baton: the login to {baton.target} has expired: run `baton login` again\n"


async def test_logout_revokes_and_forgets(baton: Baton) -> None:
    await _login_alice(baton)
    refresh_token = _stored(baton)["refresh_token"]
    result = await baton("logout", api_key=None)
    assert result.exit_code == 0
    assert result.stdout == f"logged out of {baton.target}\n"
    assert baton.target not in json.loads((baton.home / "baton" / "credentials.json").read_text())

    def refresh() -> None:
        with Client.connect(baton.target) as client:
            client.auth.refresh_token(refresh_token)

    with pytest.raises(UnauthenticatedError):
        await asyncio.to_thread(refresh)  # the sync client must not block the server's event loop

    not_logged_in = await baton("whoami", api_key=None)
    assert not_logged_in.exit_code == 5
    assert not_logged_in.stderr == (f"baton: not logged in to {baton.target}: run `baton login` or set BATON_API_KEY\n")
    again = await baton("logout", api_key=None)
    assert again.exit_code == 0
    assert "nothing to do" in again.stdout


async def test_login_with_an_api_key_and_bad_password(baton: Baton) -> None:
    stored = await baton("login", "--api-key", ADMIN_KEY, api_key=None)
    assert stored.exit_code == 0, stored.stderr
    assert _stored(baton)["api_key"] == ADMIN_KEY
    assert (await baton.json("whoami", api_key=None))["user"]["username"] == "admin"

    wrong = await baton("login", "-u", "admin", "--password-stdin", input="nope\n", api_key=None)
    assert wrong.exit_code == 5
    assert wrong.stderr.count("\n") == 1


async def test_env_key_wins_over_the_stored_login(baton: Baton, tmp_path: Path) -> None:
    await _login_alice(baton)
    who = await baton.json("whoami")  # BATON_API_KEY is the admin's
    assert who["user"]["username"] == "admin"
