"""UserService through the real server: validation details, API keys shown once and revoked at once, etags,
pagination, and the audit trail of it all."""

from __future__ import annotations

import grpc
from google.protobuf import field_mask_pb2

from baton.v1 import admin_pb2, admin_pb2_grpc, users_pb2, users_pb2_grpc
from tests.integration.chassis.conftest import (
    api_key,
    audit_events,
    bindings,
    create_account,
    create_key,
    create_user,
    disable_user,
    revoke_key,
    rich_error,
    who_am_i,
)
from tests.support.server import RunningServer

INVALID = grpc.StatusCode.INVALID_ARGUMENT
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


def users(running: RunningServer) -> users_pb2_grpc.UserServiceStub:
    return users_pb2_grpc.UserServiceStub(running.channel)


async def test_create_user_validation_names_the_fields(server: RunningServer) -> None:
    request = users_pb2.CreateUserRequest(
        user=users_pb2.User(username="No Spaces!", kind=users_pb2.USER_KIND_HUMAN), password="short"
    )
    error = await rich_error(users(server).CreateUser(request, metadata=server.admin), INVALID)
    assert {"user.username", "password"} <= set(error.violations)
    assert error.info.domain == "baton.dev"

    service_account = users_pb2.CreateUserRequest(
        user=users_pb2.User(
            username="svc.ok",
            kind=users_pb2.USER_KIND_SERVICE_ACCOUNT,
            role_bindings=[users_pb2.RoleBinding(role=0), users_pb2.RoleBinding(role=1, namespace="Bad NS")],
        ),
        password="service accounts have none",
    )
    error = await rich_error(users(server).CreateUser(service_account, metadata=server.admin), INVALID)
    assert "user.role_bindings[0].role" in error.violations


async def test_duplicate_username_is_already_exists(server: RunningServer) -> None:
    await create_user(server, "dup-user", "viewer")
    await rich_error(create_user(server, "dup-user", "viewer"), grpc.StatusCode.ALREADY_EXISTS)


async def test_api_key_is_shown_once(server: RunningServer) -> None:
    user = await create_user(server, "svc-keys", "viewer")
    created = await create_key(server, user.id)
    assert len(created.key) >= 32
    assert created.api_key.prefix
    assert created.key.startswith(created.api_key.prefix)
    assert created.key not in str(created.api_key)
    listed = await users(server).ListApiKeys(users_pb2.ListApiKeysRequest(user_id=user.id), metadata=server.admin)
    assert [k.id for k in listed.api_keys] == [created.api_key.id]
    assert created.key.encode() not in listed.SerializeToString()
    assert (await who_am_i(server, api_key(created.key))).auth_method == "api_key"


async def test_revoked_key_fails_at_once(server: RunningServer) -> None:
    account = await create_account(server, "svc-revoke", "viewer")
    other = await create_key(server, account.user.id)
    assert (await who_am_i(server, account.metadata)).user.id == account.user.id  # now cached as valid
    revoked = await revoke_key(server, account.key_id)
    assert revoked.HasField("revoke_time")
    error = await rich_error(who_am_i(server, account.metadata), UNAUTHENTICATED)
    assert error.info.reason == "API_KEY_REVOKED"
    assert (await who_am_i(server, api_key(other.key))).user.id == account.user.id  # only that key
    assert (await revoke_key(server, account.key_id)).id == account.key_id  # idempotent
    listed = await users(server).ListApiKeys(
        users_pb2.ListApiKeysRequest(user_id=account.user.id), metadata=server.admin
    )
    assert [k.id for k in listed.api_keys] == [other.api_key.id]
    with_revoked = await users(server).ListApiKeys(
        users_pb2.ListApiKeysRequest(user_id=account.user.id, show_revoked=True), metadata=server.admin
    )
    assert {k.id for k in with_revoked.api_keys} == {account.key_id, other.api_key.id}


async def test_disabling_a_user_stops_its_keys(server: RunningServer) -> None:
    account = await create_account(server, "svc-disable", "viewer")
    await who_am_i(server, account.metadata)
    disabled = await disable_user(server, account.user)
    assert disabled.disabled
    error = await rich_error(who_am_i(server, account.metadata), UNAUTHENTICATED)
    assert error.info.reason == "PRINCIPAL_DISABLED"
    enabled = users_pb2.User(id=account.user.id, disabled=False)
    request = users_pb2.UpdateUserRequest(user=enabled, update_mask=field_mask_pb2.FieldMask(paths=["disabled"]))
    await users(server).UpdateUser(request, metadata=server.admin)
    assert (await who_am_i(server, account.metadata)).user.id == account.user.id


async def test_etag_mismatch_is_aborted(server: RunningServer) -> None:
    user = await create_user(server, "svc-etag", "viewer")
    assert user.etag
    stale = users_pb2.User(id=user.id, display_name="first", etag=user.etag)
    mask = field_mask_pb2.FieldMask(paths=["display_name"])
    updated = await users(server).UpdateUser(
        users_pb2.UpdateUserRequest(user=stale, update_mask=mask), metadata=server.admin
    )
    assert updated.etag != user.etag
    stale.display_name = "second"
    error = await rich_error(
        users(server).UpdateUser(users_pb2.UpdateUserRequest(user=stale, update_mask=mask), metadata=server.admin),
        grpc.StatusCode.ABORTED,
    )
    assert error.info.domain == "baton.dev"
    await rich_error(
        users(server).DeleteUser(users_pb2.DeleteUserRequest(id=user.id, etag=user.etag), metadata=server.admin),
        grpc.StatusCode.ABORTED,
    )
    got = await users(server).GetUser(users_pb2.GetUserRequest(id=user.id), metadata=server.admin)
    assert got.display_name == "first"


async def test_update_mask_is_checked(server: RunningServer) -> None:
    user = await create_user(server, "svc-mask", "viewer")
    for paths in ([], ["username"]):
        request = users_pb2.UpdateUserRequest(user=user, update_mask=field_mask_pb2.FieldMask(paths=paths))
        error = await rich_error(users(server).UpdateUser(request, metadata=server.admin), INVALID)
        assert "update_mask" in error.violations


async def test_list_users_pages(server: RunningServer) -> None:
    for name in ("page-c", "page-a", "page-b"):
        await create_user(server, name, "viewer")
    seen: list[str] = []
    token, pages = "", 0
    while True:
        page = await users(server).ListUsers(
            users_pb2.ListUsersRequest(page_size=1, page_token=token), metadata=server.admin
        )
        pages += 1
        assert len(page.users) == 1
        seen.append(page.users[0].username)
        token = page.next_page_token
        if not token:
            break
        assert pages < 10
    assert seen == sorted(seen)
    assert {"page-a", "page-b", "page-c", "admin"} <= set(seen)
    everyone = await users(server).ListUsers(users_pb2.ListUsersRequest(), metadata=server.admin)
    assert [u.username for u in everyone.users] == seen
    assert not everyone.next_page_token


async def test_bad_pagination_is_invalid_argument(server: RunningServer) -> None:
    stub = users(server)
    garbage = await rich_error(
        stub.ListUsers(users_pb2.ListUsersRequest(page_token="%%%not-a-token"), metadata=server.admin), INVALID
    )
    assert "page_token" in garbage.violations
    await create_user(server, "zz-another", "viewer")  # so that there is a next page
    first = await stub.ListUsers(users_pb2.ListUsersRequest(page_size=1), metadata=server.admin)
    assert first.next_page_token
    changed = await rich_error(
        stub.ListUsers(
            users_pb2.ListUsersRequest(page_size=1, page_token=first.next_page_token, show_disabled=True),
            metadata=server.admin,
        ),
        INVALID,
    )
    assert "page_token" in changed.violations
    negative = await rich_error(
        stub.ListUsers(users_pb2.ListUsersRequest(page_size=-1), metadata=server.admin), INVALID
    )
    assert "page_size" in negative.violations
    audit = admin_pb2_grpc.AdminServiceStub(server.channel)
    events = await rich_error(
        audit.ListAuditEvents(admin_pb2.ListAuditEventsRequest(page_token="garbage!"), metadata=server.admin),
        INVALID,
    )
    assert "page_token" in events.violations


async def test_key_and_permission_events_are_audited(server: RunningServer) -> None:
    viewer = await create_account(server, "svc-audited", "viewer")
    await revoke_key(server, viewer.key_id)
    other = await create_key(server, viewer.user.id)
    await rich_error(
        users(server).ListUsers(users_pb2.ListUsersRequest(), metadata=api_key(other.key)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    created = await audit_events(server, 'action = "api_key.created"', at_least=2)
    assert {e.details["key_id"] for e in created} == {viewer.key_id, other.api_key.id}
    [revoked] = await audit_events(server, 'action = "api_key.revoked"')
    assert revoked.details["key_id"] == viewer.key_id
    assert revoked.principal_id == (await who_am_i(server, server.admin)).user.id
    [denied] = await audit_events(server, f'action = "permission.denied" AND principal_id = "{viewer.user.id}"')
    assert denied.outcome == "denied"
    assert denied.method == "/baton.v1.UserService/ListUsers"
    assert denied.details["permission"] == "users.admin"
    assert denied.request_id
    by_outcome = await audit_events(server, 'outcome = "denied"')
    assert denied.id in {e.id for e in by_outcome}
    for event in (*created, revoked, denied):
        assert viewer.key not in str(event)
        assert other.key not in str(event)


async def test_bad_audit_filter_is_invalid_argument(server: RunningServer) -> None:
    stub = admin_pb2_grpc.AdminServiceStub(server.channel)
    for text in ('nonsense = "x"', "action = unquoted", 'action != "login.failed"', 'create_time >= "yesterday"'):
        error = await rich_error(
            stub.ListAuditEvents(admin_pb2.ListAuditEventsRequest(filter=text), metadata=server.admin), INVALID
        )
        assert "filter" in error.violations, text


async def test_scoped_bindings_round_trip(server: RunningServer) -> None:
    user = await create_user(server, "svc-scoped", "developer@payments", "viewer")
    got = await users(server).GetUser(users_pb2.GetUserRequest(id=user.id), metadata=server.admin)
    assert list(got.role_bindings) == bindings("developer@payments", "viewer")


async def test_who_am_i_follows_a_role_change_at_once(server: RunningServer) -> None:
    account = await create_account(server, "changing-roles", "viewer")
    before = await who_am_i(server, account.metadata)
    assert "tasks.create" not in before.permissions
    assert (await who_am_i(server, account.metadata)) == before  # answered again for the same principal
    changed = users_pb2.User()
    changed.CopyFrom(account.user)
    del changed.role_bindings[:]
    changed.role_bindings.extend(bindings("developer@payments"))
    request = users_pb2.UpdateUserRequest(user=changed, update_mask=field_mask_pb2.FieldMask(paths=["role_bindings"]))
    await users(server).UpdateUser(request, metadata=server.admin, timeout=10)
    after = await who_am_i(server, account.metadata)
    assert "tasks.create@payments" in after.permissions
    assert [binding.namespace for binding in after.user.role_bindings] == ["payments"]
