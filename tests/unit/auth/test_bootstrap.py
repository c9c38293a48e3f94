"""The bootstrap admin: created once when no enabled admin exists, with a given or a generated key."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from baton.auth import AuthManager, CachingAuthenticator, Role, RoleBinding, UserRecord, ensure_bootstrap_admin
from baton.auth.api_keys import CUSTOM_KEY_PREFIX, generate_api_key
from baton.errors import FailedPrecondition, InvalidArgument
from baton.store import SqlStore, tables


async def test_generated_key_is_returned_once(manager: AuthManager, authenticator: CachingAuthenticator) -> None:
    result = await ensure_bootstrap_admin(manager, None)
    assert result.created
    assert result.user is not None
    assert result.api_key is not None
    assert result.generated_key is not None
    assert (result.user.username, result.user.kind) == ("admin", "service_account")
    assert result.user.role_bindings == (RoleBinding(Role.ADMIN),)
    assert result.generated_key.startswith(result.api_key.prefix + "_")
    principal = await authenticator.authenticate({"x-api-key": result.generated_key})
    assert principal is not None
    assert principal.can("users.admin")
    again = await ensure_bootstrap_admin(manager, None)
    assert not again.created
    assert again.generated_key is None
    assert await manager.count_admins() == 1


async def test_given_key_in_any_format(manager: AuthManager, authenticator: CachingAuthenticator) -> None:
    given = "my-own-bootstrap-key-from-the-vault-0123456789"
    result = await ensure_bootstrap_admin(manager, given)
    assert result.created
    assert result.generated_key is None
    assert result.api_key is not None
    assert result.api_key.prefix == CUSTOM_KEY_PREFIX
    principal = await authenticator.authenticate({"x-api-key": given})
    assert principal is not None
    assert principal.credential_id == result.api_key.id
    assert not (await ensure_bootstrap_admin(manager, given)).created


async def test_given_key_in_the_bk_format_keeps_its_id(
    manager: AuthManager, authenticator: CachingAuthenticator
) -> None:
    given = generate_api_key()
    result = await ensure_bootstrap_admin(manager, given.key)
    assert result.api_key is not None
    assert (result.api_key.id, result.api_key.prefix) == (given.key_id, given.prefix)
    assert await authenticator.authenticate({"x-api-key": given.key}) is not None


async def test_nothing_happens_when_an_admin_exists(manager: AuthManager, admin: UserRecord) -> None:
    result = await ensure_bootstrap_admin(manager, None)
    assert not result.created
    users, _ = await manager.list_users()
    assert [u.username for u in users] == ["root"]


async def test_recovers_when_every_admin_is_disabled(store: SqlStore, manager: AuthManager, admin: UserRecord) -> None:
    # The API refuses to disable the last admin; an operator may still do it in the database.
    statement = update(tables.principals).where(tables.principals.c.id == admin.id).values(disabled=True)
    await store.run_in_transaction(lambda connection: connection.execute(statement))
    assert await manager.count_admins() == 0
    result = await ensure_bootstrap_admin(manager, None)
    assert result.created
    assert await manager.count_admins() == 1


async def test_admin_name_taken_by_a_non_admin(manager: AuthManager) -> None:
    await manager.create_user("admin", "Not an admin", "service_account", [RoleBinding(Role.VIEWER)])
    with pytest.raises(FailedPrecondition) as caught:
        await ensure_bootstrap_admin(manager, None)
    assert caught.value.reason == "BOOTSTRAP_BLOCKED"


async def test_short_given_key_is_refused(manager: AuthManager) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await ensure_bootstrap_admin(manager, "too-short")
    assert caught.value.field_violations[0].field == "key"
    assert await manager.count_admins() == 0
