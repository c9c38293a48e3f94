"""The authenticator: API keys and bearer tokens to principals, its caches and their invalidation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

import pytest

from baton.auth import AuthManager, CachingAuthenticator, Role, RoleBinding, TokenCodec, UserChanges, UserRecord
from baton.config import AuthConfig
from baton.errors import Unauthenticated
from baton.store import SqlStore

USER_PASSWORD = "another long password"  # alice's, from conftest
Counter = Callable[[], AbstractContextManager[list[tuple[str, Any]]]]


async def refused(authenticator: CachingAuthenticator, metadata: dict[str, str]) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as caught:
        await authenticator.authenticate(metadata)
    for value in metadata.values():
        secret = value.split()[-1] if value.split() else ""
        assert len(secret) < 8 or secret not in caught.value.message  # never echo the credential
    return caught.value


async def test_no_credentials_is_anonymous(authenticator: CachingAuthenticator) -> None:
    assert await authenticator.authenticate({}) is None
    assert await authenticator.authenticate({"x-request-id": "r1"}) is None


async def test_api_key_gives_the_owner_with_its_permissions(
    manager: AuthManager, authenticator: CachingAuthenticator, robot: UserRecord
) -> None:
    record, key = await manager.create_api_key(robot.id, "ci")
    principal = await authenticator.authenticate({"x-api-key": key})
    assert principal is not None
    assert (principal.id, principal.username, principal.kind) == (robot.id, "robot", "service_account")
    assert (principal.auth_method, principal.credential_id) == ("api_key", record.id)
    assert principal.can("steps.poll", "any-namespace")
    assert not principal.can("tasks.create", "billing")


async def test_cached_api_key_does_not_touch_the_database(
    count_statements: Counter,
    store: SqlStore,
    manager: AuthManager,
    authenticator: CachingAuthenticator,
    robot: UserRecord,
) -> None:
    _, key = await manager.create_api_key(robot.id, "ci")
    with count_statements() as first_call:
        await authenticator.authenticate({"x-api-key": key})
    assert first_call  # the first call reads the key and its owner
    with count_statements() as statements:
        for _ in range(100):
            assert await authenticator.authenticate({"x-api-key": key}) is not None
    assert statements == []


async def test_revocation_is_effective_at_once_on_this_replica(
    manager: AuthManager, authenticator: CachingAuthenticator, robot: UserRecord
) -> None:
    record, key = await manager.create_api_key(robot.id, "ci")
    assert await authenticator.authenticate({"x-api-key": key}) is not None
    await manager.revoke_api_key(record.id)
    assert (await refused(authenticator, {"x-api-key": key})).reason == "API_KEY_REVOKED"


async def test_another_replica_sees_a_revocation_when_its_cache_expires(
    store: SqlStore, codec: TokenCodec, manager: AuthManager, robot: UserRecord
) -> None:
    now = [1000.0]
    other = CachingAuthenticator(store, codec, cache_seconds=30.0, clock=lambda: now[0])
    record, key = await manager.create_api_key(robot.id, "ci")
    assert await other.authenticate({"x-api-key": key}) is not None
    await manager.revoke_api_key(record.id)  # invalidates the fixture's authenticator, not `other`
    assert await other.authenticate({"x-api-key": key}) is not None
    now[0] += 31
    assert (await refused(other, {"x-api-key": key})).reason == "API_KEY_REVOKED"


async def test_refusals_are_cached_too(
    count_statements: Counter,
    store: SqlStore,
    manager: AuthManager,
    authenticator: CachingAuthenticator,
    robot: UserRecord,
) -> None:
    record, key = await manager.create_api_key(robot.id, "ci")
    await manager.revoke_api_key(record.id)
    await refused(authenticator, {"x-api-key": key})
    with count_statements() as statements:
        assert (await refused(authenticator, {"x-api-key": key})).reason == "API_KEY_REVOKED"
    assert statements == []


async def test_expired_key_is_refused(
    manager: AuthManager, authenticator: CachingAuthenticator, robot: UserRecord, clock: Any
) -> None:
    clock.advance(-3600)  # create the key an hour ago, expiring half an hour ago
    _, key = await manager.create_api_key(robot.id, "old", expire_time=clock.now + timedelta(minutes=30))
    error = await refused(authenticator, {"x-api-key": key})
    assert error.reason == "API_KEY_EXPIRED"


async def test_cached_key_stops_at_its_expiry(
    store: SqlStore, codec: TokenCodec, manager: AuthManager, robot: UserRecord, clock: Any
) -> None:
    wall = [time.time()]
    authenticator = CachingAuthenticator(store, codec, wall_clock=lambda: wall[0])
    _, key = await manager.create_api_key(robot.id, "soon", expire_time=clock.now + timedelta(seconds=10))
    assert await authenticator.authenticate({"x-api-key": key}) is not None
    wall[0] += 11
    assert (await refused(authenticator, {"x-api-key": key})).reason == "API_KEY_EXPIRED"


async def test_disabled_owner_is_refused_at_once(
    manager: AuthManager, authenticator: CachingAuthenticator, admin: UserRecord, robot: UserRecord
) -> None:
    _, key = await manager.create_api_key(robot.id, "ci")
    assert await authenticator.authenticate({"x-api-key": key}) is not None
    await manager.update_user(robot.id, UserChanges(disabled=True), {"disabled"})
    assert (await refused(authenticator, {"x-api-key": key})).reason == "PRINCIPAL_DISABLED"
    await manager.update_user(robot.id, UserChanges(disabled=False), {"disabled"})
    assert await authenticator.authenticate({"x-api-key": key}) is not None


async def test_role_change_applies_at_once(
    manager: AuthManager, authenticator: CachingAuthenticator, admin: UserRecord, robot: UserRecord
) -> None:
    _, key = await manager.create_api_key(robot.id, "ci")
    before = await authenticator.authenticate({"x-api-key": key})
    assert before is not None
    assert not before.can("tasks.create", "billing")
    await manager.update_user(robot.id, UserChanges(role_bindings=(RoleBinding(Role.OPERATOR),)), {"role_bindings"})
    after = await authenticator.authenticate({"x-api-key": key})
    assert after is not None
    assert after.can("tasks.create", "billing")


async def test_deleted_owner_is_refused(
    manager: AuthManager, authenticator: CachingAuthenticator, robot: UserRecord
) -> None:
    _, key = await manager.create_api_key(robot.id, "ci")
    assert await authenticator.authenticate({"x-api-key": key}) is not None
    await manager.delete_user(robot.id)
    assert (await refused(authenticator, {"x-api-key": key})).reason == "API_KEY_INVALID"


@pytest.mark.parametrize(
    "key",
    ["", "short", "bk_abcdefghijkl_" + "A" * 43, "x" * 40, "x" * 300, "bk_" + "é" * 40, "bk_abc def" + "x" * 40],
)
async def test_unknown_and_malformed_keys_are_refused(
    authenticator: CachingAuthenticator, robot: UserRecord, key: str
) -> None:
    error = await refused(authenticator, {"x-api-key": key})
    assert error.reason == "API_KEY_INVALID"


async def test_right_key_id_with_a_wrong_secret_is_refused(
    manager: AuthManager, authenticator: CachingAuthenticator, robot: UserRecord
) -> None:
    record, _ = await manager.create_api_key(robot.id, "ci")
    forged = f"{record.prefix}_{'A' * 43}"
    assert (await refused(authenticator, {"x-api-key": forged})).reason == "API_KEY_INVALID"


async def test_both_credentials_are_refused(
    manager: AuthManager, authenticator: CachingAuthenticator, robot: UserRecord, codec: TokenCodec
) -> None:
    _, key = await manager.create_api_key(robot.id, "ci")
    token = codec.issue(robot.id, robot.revision).token
    error = await refused(authenticator, {"x-api-key": key, "authorization": f"Bearer {token}"})
    assert error.reason == "CREDENTIALS_CONFLICT"
    assert "one credential" in error.message


async def test_bearer_token_gives_the_user(
    manager: AuthManager, authenticator: CachingAuthenticator, alice: UserRecord
) -> None:
    grant = await manager.login("alice", USER_PASSWORD)
    for scheme in ("Bearer", "bearer", "BEARER"):
        principal = await authenticator.authenticate({"authorization": f"{scheme} {grant.access_token}"})
        assert principal is not None
        assert (principal.id, principal.auth_method) == (alice.id, "jwt")
        assert principal.can("tasks.create", "billing")
        assert not principal.can("tasks.create", "payroll")


async def test_cached_bearer_token_does_not_touch_the_database(
    count_statements: Counter,
    store: SqlStore,
    manager: AuthManager,
    authenticator: CachingAuthenticator,
    alice: UserRecord,
) -> None:
    grant = await manager.login("alice", USER_PASSWORD)
    metadata = {"authorization": f"Bearer {grant.access_token}"}
    await authenticator.authenticate(metadata)
    with count_statements() as statements:
        for _ in range(10):
            assert await authenticator.authenticate(metadata) is not None
    assert statements == []


@pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "Token abc", "garbage", ""])
async def test_malformed_authorization_is_refused(authenticator: CachingAuthenticator, value: str) -> None:
    assert (await refused(authenticator, {"authorization": value})).reason == "TOKEN_INVALID"


async def test_bad_bearer_tokens_are_refused(
    authenticator: CachingAuthenticator, alice: UserRecord, codec: TokenCodec
) -> None:
    assert (await refused(authenticator, {"authorization": "Bearer a.b.c"})).reason == "TOKEN_INVALID"
    stale = codec.issue(alice.id, alice.revision)
    other = TokenCodec(
        algorithm="HS256",
        signing_key=b"x" * 32,
        verification_key=b"x" * 32,
        issuer="baton",
        audience="baton",
        ttl_seconds=900,
    )
    forged = other.issue(alice.id, alice.revision).token
    assert (await refused(authenticator, {"authorization": f"Bearer {forged}"})).reason == "TOKEN_INVALID"
    assert await authenticator.authenticate({"authorization": f"Bearer {stale.token}"}) is not None


async def test_token_of_a_changed_user_stops_working(
    manager: AuthManager, authenticator: CachingAuthenticator, admin: UserRecord, alice: UserRecord
) -> None:
    grant = await manager.login("alice", USER_PASSWORD)
    metadata = {"authorization": f"Bearer {grant.access_token}"}
    assert await authenticator.authenticate(metadata) is not None
    await manager.update_user(alice.id, UserChanges(role_bindings=(RoleBinding(Role.VIEWER),)), {"role_bindings"})
    error = await refused(authenticator, metadata)
    assert error.reason == "TOKEN_INVALID"
    assert "RefreshToken" in error.message
    refreshed = await manager.refresh(grant.refresh_token)  # a refresh picks up the new roles
    principal = await authenticator.authenticate({"authorization": f"Bearer {refreshed.access_token}"})
    assert principal is not None
    assert not principal.can("tasks.create", "billing")


async def test_token_of_a_disabled_or_deleted_user_is_refused(
    manager: AuthManager, authenticator: CachingAuthenticator, admin: UserRecord, alice: UserRecord, codec: TokenCodec
) -> None:
    await manager.update_user(alice.id, UserChanges(disabled=True), {"disabled"})
    disabled = await manager.get_user(alice.id)
    token = codec.issue(alice.id, disabled.revision).token
    assert (await refused(authenticator, {"authorization": f"Bearer {token}"})).reason == "PRINCIPAL_DISABLED"
    await manager.delete_user(alice.id)
    assert (await refused(authenticator, {"authorization": f"Bearer {token}"})).reason == "TOKEN_INVALID"


async def test_last_used_is_written_in_batches(
    count_statements: Counter,
    store: SqlStore,
    manager: AuthManager,
    authenticator: CachingAuthenticator,
    robot: UserRecord,
) -> None:
    first, first_key = await manager.create_api_key(robot.id, "one")
    second, second_key = await manager.create_api_key(robot.id, "two")
    with count_statements() as statements:
        for _ in range(50):
            await authenticator.authenticate({"x-api-key": first_key})
            await authenticator.authenticate({"x-api-key": second_key})
        await authenticator.flush_usage()
        await authenticator.flush_usage()  # nothing new: no write
    updates = [params for sql, params in statements if sql.lstrip().upper().startswith("UPDATE API_KEYS")]
    assert len(updates) == 1  # one executemany ...
    assert len(updates[0]) == 2  # ... with one row per key
    keys, _ = await manager.list_api_keys(robot.id)
    assert all(k.last_used_time is not None for k in keys)
    assert {k.id for k in keys} == {first.id, second.id}


async def test_last_used_is_written_on_close(
    store: SqlStore, codec: TokenCodec, manager: AuthManager, robot: UserRecord
) -> None:
    authenticator = CachingAuthenticator(store, codec, usage_flush_seconds=3600)
    await authenticator.start()
    _, key = await manager.create_api_key(robot.id, "ci")
    await authenticator.authenticate({"x-api-key": key})
    await authenticator.close()
    [record], _ = await manager.list_api_keys(robot.id)
    assert record.last_used_time is not None


async def test_background_writer_flushes_periodically(
    store: SqlStore, codec: TokenCodec, manager: AuthManager, robot: UserRecord
) -> None:
    authenticator = CachingAuthenticator(store, codec, usage_flush_seconds=0.05)
    await authenticator.start()
    try:
        _, key = await manager.create_api_key(robot.id, "ci")
        await authenticator.authenticate({"x-api-key": key})
        for _ in range(100):
            [record], _ = await manager.list_api_keys(robot.id)
            if record.last_used_time is not None:
                break
            await asyncio.sleep(0.02)
        assert record.last_used_time is not None
    finally:
        await authenticator.close()


async def test_cache_is_bounded(
    count_statements: Counter, store: SqlStore, codec: TokenCodec, manager: AuthManager, robot: UserRecord
) -> None:
    authenticator = CachingAuthenticator(store, codec, max_entries=2)
    keys = [(await manager.create_api_key(robot.id, f"k{i}"))[1] for i in range(3)]
    for key in keys:
        await authenticator.authenticate({"x-api-key": key})
    with count_statements() as statements:
        await authenticator.authenticate({"x-api-key": keys[2]})  # recent: cached
    assert statements == []
    with count_statements() as statements:
        await authenticator.authenticate({"x-api-key": keys[0]})  # evicted: read again
    assert statements


async def test_zero_cache_seconds_reads_every_time(
    count_statements: Counter, store: SqlStore, codec: TokenCodec, manager: AuthManager, robot: UserRecord
) -> None:
    authenticator = CachingAuthenticator(store, codec, cache_seconds=0)
    _, key = await manager.create_api_key(robot.id, "ci")
    await authenticator.authenticate({"x-api-key": key})
    with count_statements() as statements:
        await authenticator.authenticate({"x-api-key": key})
    assert statements


async def test_lookup_overlapping_an_invalidation_is_not_cached(
    count_statements: Counter, manager: AuthManager, authenticator: CachingAuthenticator, robot: UserRecord
) -> None:
    record, key = await manager.create_api_key(robot.id, "ci")
    repository = authenticator._keys_repository
    real_find = repository.find

    async def find_then_race(key_id: str | None, digest: str) -> Any:
        found = await real_find(key_id, digest)
        await manager.revoke_api_key(record.id)  # lands while the lookup's (older) answer is in flight
        return found

    repository.find = find_then_race  # type: ignore[method-assign]
    assert await authenticator.authenticate({"x-api-key": key}) is not None  # read before the revocation
    repository.find = real_find  # type: ignore[method-assign]
    assert (await refused(authenticator, {"x-api-key": key})).reason == "API_KEY_REVOKED"


async def test_from_config_caches_for_the_configured_time(
    store: SqlStore, codec: TokenCodec, manager: AuthManager, robot: UserRecord
) -> None:
    now = [0.0]
    authenticator = CachingAuthenticator.from_config(store, AuthConfig(api_key_cache_seconds=5), codec)
    authenticator._clock = lambda: now[0]
    record, key = await manager.create_api_key(robot.id, "ci")
    await authenticator.authenticate({"x-api-key": key})
    await manager.revoke_api_key(record.id)
    now[0] = 4.9
    assert await authenticator.authenticate({"x-api-key": key}) is not None
    now[0] = 5.1
    assert (await refused(authenticator, {"x-api-key": key})).reason == "API_KEY_REVOKED"


async def test_cached_answers_only_for_a_key_verified_within_the_cache_period(
    store: SqlStore, codec: TokenCodec, manager: AuthManager, robot: UserRecord, clock: Any
) -> None:
    now, wall = [1000.0], [time.time()]
    authenticator = CachingAuthenticator(
        store, codec, cache_seconds=30.0, clock=lambda: now[0], wall_clock=lambda: wall[0]
    )
    record, key = await manager.create_api_key(robot.id, "ci", expire_time=clock.now + timedelta(seconds=60))
    assert authenticator.cached({"x-api-key": key}) is None  # never verified: authenticate() must decide
    verified = await authenticator.authenticate({"x-api-key": key})
    assert verified is not None
    assert authenticator.cached({"x-api-key": key}) is verified
    assert authenticator.cached({"x-api-key": key, "authorization": "Bearer x"}) is None  # both: refused later
    assert authenticator.cached({"authorization": "Bearer x"}) is None
    assert authenticator.cached({"x-api-key": key + "x"}) is None
    assert authenticator.cached({}) is None
    wall[0] += 5
    authenticator.cached({"x-api-key": key})
    assert authenticator.usage.drain()[record.id].timestamp() == pytest.approx(wall[0])  # last use still kept
    now[0] += 31
    assert authenticator.cached({"x-api-key": key}) is None  # the cache period is over: verified again
    assert await authenticator.authenticate({"x-api-key": key}) is not None
    wall[0] += 61
    assert authenticator.cached({"x-api-key": key}) is None  # past the key's own expiry
    authenticator.invalidate_key(record.id)
    assert authenticator.cached({"x-api-key": key}) is None
