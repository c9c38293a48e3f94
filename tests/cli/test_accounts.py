"""`baton users` and `baton keys` against a real server."""

from __future__ import annotations

from tests.cli.conftest import Baton


async def test_users_create_get_list_update_delete(baton: Baton) -> None:
    created = await baton.json("users", "create", "ci-bot", "--service", "--role", "developer:payments")
    assert created["kind"] == "USER_KIND_SERVICE_ACCOUNT"
    assert created["roleBindings"] == [{"role": "ROLE_DEVELOPER", "namespace": "payments"}]
    user_id = created["id"]

    shown = await baton("users", "get", user_id)
    assert "ci-bot" in shown.stdout
    assert "developer:payments" in shown.stdout
    assert {u["username"] for u in await baton.json("users", "list")} == {"admin", "ci-bot"}

    updated = await baton.json("users", "update", user_id, "--display-name", "CI", "--role", "viewer", "--disable")
    assert updated["displayName"] == "CI"
    assert updated["disabled"] is True
    assert updated["roleBindings"] == [{"role": "ROLE_VIEWER"}]
    assert {u["username"] for u in await baton.json("users", "list")} == {"admin"}
    assert "ci-bot" in (await baton("users", "list", "--show-disabled")).stdout

    nothing = await baton("users", "update", user_id)
    assert nothing.exit_code == 2
    assert nothing.stderr.startswith("baton: nothing to change")
    bad_role = await baton("users", "create", "x", "--service", "--role", "wizard")
    assert bad_role.exit_code == 2
    assert "unknown role" in bad_role.stderr

    deleted = await baton("users", "delete", user_id, "--yes")
    assert deleted.exit_code == 0, deleted.stderr
    gone = await baton("users", "get", user_id)
    assert gone.exit_code == 4
    assert gone.stderr.count("\n") == 1
    duplicate = await baton("users", "create", "admin", "--service")
    assert duplicate.exit_code == 6


async def test_keys_create_list_revoke(baton: Baton) -> None:
    user_id = (await baton.json("users", "create", "ci-bot", "--service", "--role", "admin"))["id"]
    created = await baton("keys", "create", user_id, "--name", "ci", "--expires-in", "30d")
    assert created.exit_code == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("bk_")
    assert "shown only once" in created.stderr

    who = await baton.json("whoami", api_key=key)  # the new key works
    assert who["user"]["username"] == "ci-bot"

    keys = await baton.json("keys", "list", user_id)
    assert [k["displayName"] for k in keys] == ["ci"]
    assert "expireTime" in keys[0]
    table = await baton("keys", "list", user_id)
    assert "active" in table.stdout
    assert key not in table.stdout

    key_id = keys[0]["id"]
    revoked = await baton("keys", "revoke", user_id, key_id)
    assert revoked.exit_code == 0
    assert f"revoked API key {key_id}" in revoked.stdout
    assert await baton.json("keys", "list", user_id) == []
    assert "revoked" in (await baton("keys", "list", user_id, "--show-revoked")).stdout
    refused = await baton("whoami", api_key=key)
    assert refused.exit_code == 5

    wrong_owner = await baton("keys", "revoke", user_id, "nope")
    assert wrong_owner.exit_code == 4
    assert wrong_owner.stderr == f"baton: user {user_id} has no API key nope\n"
    by_name = await baton.json("keys", "list", "ci-bot", "--show-revoked")  # a username works as well as an ID
    assert [k["id"] for k in by_name] == [key_id]
    assert (await baton("keys", "list", "nobody")).exit_code == 4
    bad_expiry = await baton("keys", "create", user_id, "--expires-in", "soon")
    assert bad_expiry.exit_code == 2
