"""AuthManager: validation, users, etags, the last admin, pagination, logins and their audit trail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher

from baton.auth import Actor, AuditLog, AuthManager, Passwords, Role, RoleBinding, UserChanges, UserRecord
from baton.auth.audit import AuditEventRecord
from baton.auth.repository import UserRepository
from baton.config import AuthConfig
from baton.errors import AlreadyExists, BatonError, FailedPrecondition, InvalidArgument, NotFound, Unauthenticated
from baton.store import SqlStore

ADMIN_PASSWORD = "correct horse battery"  # conftest's
USER_PASSWORD = "another long password"


def violations(error: BaseException) -> dict[str, str]:
    assert isinstance(error, InvalidArgument)
    return {v.field: v.description for v in error.field_violations}


async def events(audit: AuditLog, action: str) -> list[AuditEventRecord]:
    await audit.flush()
    found, _ = await audit.list_events(100, "", f'action = "{action}"')
    return found


async def test_create_user(manager: AuthManager) -> None:
    user = await manager.create_user(
        "bob@example.com",
        "Bob",
        "human",
        [RoleBinding(Role.VIEWER, "billing"), RoleBinding(Role.VIEWER, "billing"), RoleBinding(Role.WORKER, "")],
        "a good long password",
    )
    assert (user.username, user.display_name, user.kind, user.disabled) == ("bob@example.com", "Bob", "human", False)
    assert user.role_bindings == (RoleBinding(Role.VIEWER, "billing"), RoleBinding(Role.WORKER, None))
    assert user.create_time == user.update_time
    assert user.etag
    assert await manager.get_user(user.id) == user


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"username": "ab"}, {"user.username": "3-64 characters"}),
        ({"username": "Bob"}, {"user.username": "lower-case"}),
        ({"username": "b" * 65}, {"user.username": "3-64"}),
        ({"display_name": "d" * 300}, {"user.display_name": "at most 256"}),
        ({"kind": "robot"}, {"user.kind": "human or service_account"}),
        ({"bindings": [RoleBinding(Role.VIEWER, "Billing")]}, {"user.role_bindings[0].namespace": "starting with"}),
        (
            {"bindings": [RoleBinding(Role.VIEWER), RoleBinding(Role.VIEWER, "9lives")]},
            {"user.role_bindings[1].namespace": "1-63"},
        ),
        ({"bindings": [RoleBinding(Role.VIEWER, "n" * 64)]}, {"user.role_bindings[0].namespace": "1-63"}),
        ({"bindings": [RoleBinding("superuser")]}, {"user.role_bindings[0].role": "one of admin"}),  # type: ignore[arg-type]
        ({"password": ""}, {"password": "at least 12"}),
        ({"password": "short"}, {"password": "at least 12"}),
        ({"kind": "service_account", "password": "a good long password"}, {"password": "no password"}),
        (
            {"username": "x", "bindings": [RoleBinding(Role.VIEWER, "-")], "password": ""},
            {"user.username": "", "user.role_bindings[0].namespace": "", "password": ""},
        ),
    ],
)
async def test_create_user_validation(
    manager: AuthManager, kwargs: dict[str, object], expected: dict[str, str]
) -> None:
    values: dict[str, object] = {
        "username": "bob",
        "display_name": "Bob",
        "kind": "human",
        "bindings": [RoleBinding(Role.VIEWER)],
        "password": "a good long password",
    } | kwargs
    with pytest.raises(InvalidArgument) as caught:
        await manager.create_user(
            values["username"],  # type: ignore[arg-type]
            values["display_name"],  # type: ignore[arg-type]
            values["kind"],  # type: ignore[arg-type]
            values["bindings"],  # type: ignore[arg-type]
            values["password"],  # type: ignore[arg-type]
        )
    found = violations(caught.value)
    assert set(found) == set(expected)
    for field, words in expected.items():
        assert words in found[field]
        assert field in caught.value.message


async def test_duplicate_username(manager: AuthManager, alice: UserRecord) -> None:
    with pytest.raises(AlreadyExists, match="alice"):
        await manager.create_user("alice", "Other", "service_account", [])


async def test_get_unknown_user(manager: AuthManager) -> None:
    with pytest.raises(NotFound):
        await manager.get_user("no-such-id")


async def test_list_users_pages(manager: AuthManager) -> None:
    names = [f"user{index:02d}" for index in range(7)]
    for name in reversed(names):
        await manager.create_user(name, name, "service_account", [])
    disabled = await manager.create_user("user99", "off", "service_account", [])
    await manager.update_user(disabled.id, UserChanges(disabled=True), {"disabled"})
    seen, token, pages = [], "", 0
    while True:
        page, token = await manager.list_users(3, token)
        seen += [user.username for user in page]
        pages += 1
        if not token:
            break
    assert (seen, pages) == (names, 3)
    everyone, _ = await manager.list_users(100, "", show_disabled=True)
    assert [u.username for u in everyone] == [*names, "user99"]

    _, token = await manager.list_users(3)
    with pytest.raises(InvalidArgument) as caught:
        await manager.list_users(3, token, show_disabled=True)
    assert violations(caught.value) == {"page_token": "the other request fields must not change between pages"}
    for garbage in ("garbage", "eyJ2IjoxLCJwIjp7InUiOjV9LCJkIjoiIn0"):
        with pytest.raises(InvalidArgument):
            await manager.list_users(3, garbage)
    with pytest.raises(InvalidArgument):
        await manager.list_users(-1)


async def test_update_user_fields_and_etag(manager: AuthManager, admin: UserRecord, alice: UserRecord) -> None:
    changed = await manager.update_user(alice.id, UserChanges(display_name="Alice A."), ["display_name"], alice.etag)
    assert changed.display_name == "Alice A."
    assert changed.etag != alice.etag
    assert changed.role_bindings == alice.role_bindings
    with pytest.raises(BatonError) as caught:
        await manager.update_user(alice.id, UserChanges(display_name="stale"), ["display_name"], alice.etag)
    assert caught.value.code == "ABORTED"
    everything = await manager.update_user(
        alice.id, UserChanges(display_name="A", role_bindings=(RoleBinding(Role.OPERATOR, "ops"),)), ["*"]
    )
    assert (everything.display_name, everything.role_bindings, everything.disabled) == (
        "A",
        (RoleBinding(Role.OPERATOR, "ops"),),
        False,
    )


@pytest.mark.parametrize(
    ("mask", "fields", "expected"),
    [
        ([], UserChanges(), {"update_mask": "names no field"}),
        (["username"], UserChanges(), {"update_mask": "cannot update username"}),
        (["etag", "display_name"], UserChanges(), {"update_mask": "cannot update etag"}),
        (["password"], UserChanges(password="short"), {"password": "at least 12"}),
        (
            ["role_bindings"],
            UserChanges(role_bindings=(RoleBinding(Role.VIEWER), RoleBinding(Role.VIEWER, "BAD"))),
            {"user.role_bindings[1].namespace": "starting with a letter"},
        ),
        (["display_name"], UserChanges(display_name="x" * 257), {"user.display_name": "at most"}),
    ],
)
async def test_update_user_validation(
    manager: AuthManager, alice: UserRecord, mask: list[str], fields: UserChanges, expected: dict[str, str]
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await manager.update_user(alice.id, fields, mask)
    found = violations(caught.value)
    assert set(found) == set(expected)
    for field, words in expected.items():
        assert words in found[field]


async def test_service_accounts_have_no_password(manager: AuthManager, robot: UserRecord) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await manager.update_user(robot.id, UserChanges(password="a good long password"), ["password"])
    assert "password" in violations(caught.value)


async def test_update_unknown_user(manager: AuthManager) -> None:
    with pytest.raises(NotFound):
        await manager.update_user("nobody", UserChanges(display_name="x"), ["display_name"])


async def test_last_admin_cannot_be_removed(manager: AuthManager, admin: UserRecord, alice: UserRecord) -> None:
    assert await manager.count_admins() == 1
    attempts = [
        manager.update_user(admin.id, UserChanges(disabled=True), ["disabled"]),
        manager.update_user(
            admin.id, UserChanges(role_bindings=(RoleBinding(Role.ADMIN, "billing"),)), ["role_bindings"]
        ),
        manager.delete_user(admin.id),
    ]
    for attempt in attempts:
        with pytest.raises(FailedPrecondition, match="last enabled admin") as caught:
            await attempt
        assert caught.value.reason == "LAST_ADMIN"
    # Alice becomes an admin: now either may go.
    await manager.update_user(alice.id, UserChanges(role_bindings=(RoleBinding(Role.ADMIN),)), ["role_bindings"])
    assert await manager.count_admins() == 2
    await manager.update_user(admin.id, UserChanges(disabled=True), ["disabled"])
    assert await manager.count_admins() == 1
    with pytest.raises(FailedPrecondition):
        await manager.delete_user(alice.id)
    await manager.delete_user(admin.id)  # a disabled admin does not count


async def test_delete_user(manager: AuthManager, admin: UserRecord, alice: UserRecord, audit: AuditLog) -> None:
    await manager.create_api_key(alice.id, "laptop")
    grant = await manager.login("alice", USER_PASSWORD)
    with pytest.raises(BatonError) as caught:
        await manager.delete_user(alice.id, etag="999")
    assert caught.value.code == "ABORTED"
    await manager.delete_user(alice.id, etag=alice.etag, actor=Actor(admin.id, "peer", "r1"))
    with pytest.raises(NotFound):
        await manager.get_user(alice.id)
    with pytest.raises(NotFound):
        await manager.list_api_keys(alice.id)
    with pytest.raises(Unauthenticated):
        await manager.refresh(grant.refresh_token)
    with pytest.raises(NotFound):
        await manager.delete_user(alice.id)
    [deleted] = await events(audit, "user.deleted")
    assert (deleted.principal_id, deleted.request_id, deleted.details["user_id"]) == (admin.id, "r1", alice.id)


async def test_login(manager: AuthManager, alice: UserRecord, audit: AuditLog) -> None:
    grant = await manager.login("alice", USER_PASSWORD, peer="ipv4:10.0.0.1:1", request_id="r-login")
    assert grant.user.id == alice.id
    assert grant.access_token.count(".") == 2
    assert grant.refresh_token
    assert grant.refresh_token_expire_time > grant.access_token_expire_time
    [succeeded] = await events(audit, "login.succeeded")
    assert (succeeded.principal_id, succeeded.peer, succeeded.request_id) == (alice.id, "ipv4:10.0.0.1:1", "r-login")
    assert grant.refresh_token not in str(succeeded.details)


async def test_failed_logins_look_the_same(
    manager: AuthManager, alice: UserRecord, robot: UserRecord, audit: AuditLog
) -> None:
    attempts = [
        ("alice", "wrong password!!"),
        ("nobody", USER_PASSWORD),
        ("robot", ""),
        ("BAD NAME", "x"),
        ("alice", ""),
    ]
    messages = set()
    for username, password in attempts:
        with pytest.raises(Unauthenticated) as caught:
            await manager.login(username, password)
        assert caught.value.reason == "LOGIN_FAILED"
        messages.add(caught.value.message)
    assert messages == {"wrong username or password"}
    failed = await events(audit, "login.failed")
    assert sorted(e.details["reason"] for e in failed) == [
        "bad_password",
        "bad_password",
        "no_password",
        "unknown_user",
        "unknown_user",
    ]
    assert all(e.outcome == "failed" for e in failed)
    assert all("wrong password" not in str(e.details) for e in failed)


async def test_disabled_user_cannot_log_in(manager: AuthManager, admin: UserRecord, alice: UserRecord) -> None:
    await manager.update_user(alice.id, UserChanges(disabled=True), ["disabled"])
    with pytest.raises(Unauthenticated) as caught:
        await manager.login("alice", USER_PASSWORD)
    assert caught.value.reason == "PRINCIPAL_DISABLED"
    with pytest.raises(Unauthenticated) as caught:
        await manager.login("alice", "wrong password!!")
    assert caught.value.reason == "LOGIN_FAILED"


async def test_password_is_rehashed_on_login(
    store: SqlStore, manager: AuthManager, alice: UserRecord, audit: AuditLog
) -> None:
    stronger = Passwords(PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1))
    upgraded = AuthManager(store, tokens=manager._tokens, audit=audit, passwords=stronger)
    before = await UserRepository(store).get_for_login("alice")
    await upgraded.login("alice", USER_PASSWORD)
    after = await UserRepository(store).get_for_login("alice")
    assert before is not None
    assert after is not None
    assert before[1] != after[1]
    assert after[1] is not None
    assert "t=2" in after[1]
    assert not stronger.needs_rehash(after[1])
    await upgraded.login("alice", USER_PASSWORD)


async def test_password_change(manager: AuthManager, alice: UserRecord) -> None:
    grant = await manager.login("alice", USER_PASSWORD)
    await manager.update_user(alice.id, UserChanges(password="a brand new password"), ["password"])
    with pytest.raises(Unauthenticated):
        await manager.login("alice", USER_PASSWORD)
    await manager.login("alice", "a brand new password")
    with pytest.raises(Unauthenticated) as caught:
        await manager.refresh(grant.refresh_token)  # sessions of the old password are revoked
    assert caught.value.reason == "TOKEN_INVALID"


async def test_refresh_rotates(manager: AuthManager, alice: UserRecord, audit: AuditLog) -> None:
    first = await manager.login("alice", USER_PASSWORD)
    second = await manager.refresh(first.refresh_token, request_id="r-refresh")
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    third = await manager.refresh(second.refresh_token)
    assert third.user.id == alice.id
    refreshed = await events(audit, "token.refreshed")
    assert len(refreshed) == 2
    assert {e.details["family_id"] for e in refreshed} == {
        e.details["family_id"] for e in await events(audit, "login.succeeded")
    }


async def test_refresh_token_reuse_revokes_the_family(manager: AuthManager, alice: UserRecord, audit: AuditLog) -> None:
    first = await manager.login("alice", USER_PASSWORD)
    second = await manager.refresh(first.refresh_token)
    other_session = await manager.login("alice", USER_PASSWORD)
    with pytest.raises(Unauthenticated) as caught:
        await manager.refresh(first.refresh_token)  # a replay of a spent token
    assert caught.value.reason == "TOKEN_REUSED"
    with pytest.raises(Unauthenticated) as caught:
        await manager.refresh(second.refresh_token)  # the child issued from it is revoked too
    assert caught.value.reason == "TOKEN_INVALID"
    await manager.refresh(other_session.refresh_token)  # another login's family is untouched
    [reuse] = await events(audit, "refresh_token.reuse_detected")
    assert (reuse.principal_id, reuse.outcome) == (alice.id, "denied")


async def test_expired_refresh_token(manager: AuthManager, alice: UserRecord, clock: object) -> None:
    grant = await manager.login("alice", USER_PASSWORD)
    clock.advance(31 * 86_400)  # type: ignore[attr-defined]
    with pytest.raises(Unauthenticated) as caught:
        await manager.refresh(grant.refresh_token)
    assert caught.value.reason == "TOKEN_EXPIRED"


@pytest.mark.parametrize("token", ["", "garbage", "x" * 43])
async def test_unknown_refresh_token(manager: AuthManager, token: str) -> None:
    with pytest.raises(Unauthenticated) as caught:
        await manager.refresh(token)
    assert caught.value.reason == "TOKEN_INVALID"


async def test_disabled_user_cannot_refresh(manager: AuthManager, admin: UserRecord, alice: UserRecord) -> None:
    grant = await manager.login("alice", USER_PASSWORD)
    await manager.update_user(alice.id, UserChanges(disabled=True), ["disabled"])
    with pytest.raises(Unauthenticated):
        await manager.refresh(grant.refresh_token)


async def test_revoke_is_idempotent(manager: AuthManager, alice: UserRecord, audit: AuditLog) -> None:
    grant = await manager.login("alice", USER_PASSWORD)
    await manager.revoke(grant.refresh_token)
    await manager.revoke(grant.refresh_token)
    await manager.revoke("never-issued")
    with pytest.raises(Unauthenticated) as caught:
        await manager.refresh(grant.refresh_token)
    assert caught.value.reason == "TOKEN_INVALID"
    revoked = await events(audit, "token.revoked")
    assert sorted(e.details["known"] for e in revoked) == ["false", "true", "true"]


async def test_api_keys(manager: AuthManager, admin: UserRecord, robot: UserRecord, audit: AuditLog) -> None:
    actor = Actor(admin.id, "peer", "r-key")
    record, key = await manager.create_api_key(robot.id, "ci", actor=actor)
    assert key.startswith(record.prefix + "_")
    assert (record.user_id, record.display_name, record.revoke_time, record.last_used_time) == (
        robot.id,
        "ci",
        None,
        None,
    )
    revoked = await manager.revoke_api_key(record.id, actor=actor)
    assert revoked.revoke_time is not None
    again = await manager.revoke_api_key(record.id, actor=actor)
    assert again.revoke_time == revoked.revoke_time
    with pytest.raises(NotFound):
        await manager.revoke_api_key("nope")
    [created] = await events(audit, "api_key.created")
    assert (created.principal_id, created.details) == (admin.id, {"key_id": record.id, "user_id": robot.id})
    assert key not in str(created.details)
    revocations = await events(audit, "api_key.revoked")
    assert sorted(e.details["already_revoked"] for e in revocations) == ["false", "true"]


async def test_create_api_key_validation(manager: AuthManager, robot: UserRecord, clock: object) -> None:
    now = clock()  # type: ignore[operator]
    with pytest.raises(InvalidArgument) as caught:
        await manager.create_api_key(robot.id, "old", expire_time=now)
    assert "must be a time in the future" in violations(caught.value)["expire_time"]
    with pytest.raises(InvalidArgument) as caught:
        await manager.create_api_key(robot.id, "x" * 300)
    assert "display_name" in violations(caught.value)
    with pytest.raises(NotFound):
        await manager.create_api_key("nobody", "ci")


async def test_list_api_keys_pages(manager: AuthManager, robot: UserRecord, clock: object) -> None:
    created = []
    for index in range(5):
        clock.advance(1)  # type: ignore[attr-defined]
        created.append((await manager.create_api_key(robot.id, f"k{index}"))[0])
    await manager.revoke_api_key(created[1].id)
    seen, token = [], ""
    while True:
        page, token = await manager.list_api_keys(robot.id, 2, token)
        seen += [k.display_name for k in page]
        if not token:
            break
    assert seen == ["k0", "k2", "k3", "k4"]
    everything, _ = await manager.list_api_keys(robot.id, 10, "", show_revoked=True)
    assert [k.display_name for k in everything] == ["k0", "k1", "k2", "k3", "k4"]
    _, token = await manager.list_api_keys(robot.id, 2)
    with pytest.raises(InvalidArgument):
        await manager.list_api_keys(robot.id, 2, token, show_revoked=True)
    with pytest.raises(InvalidArgument):
        await manager.list_api_keys(robot.id, 2, "%%%")


async def test_from_config_uses_the_refresh_token_lifetime(
    store: SqlStore, codec: object, audit: AuditLog, passwords: Passwords, alice: UserRecord
) -> None:
    config = AuthConfig(refresh_token_ttl_seconds=600)
    configured = AuthManager.from_config(store, config, tokens=codec, audit=audit, passwords=passwords)  # type: ignore[arg-type]
    grant = await configured.login("alice", USER_PASSWORD)
    lifetime = grant.refresh_token_expire_time - datetime.now(UTC)
    assert timedelta(seconds=590) < lifetime <= timedelta(seconds=600)
