"""Login, access tokens and refresh tokens through the real server, and the usual JWT attacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from baton.v1 import auth_pb2, auth_pb2_grpc
from tests.integration.chassis.conftest import (
    PASSWORD,
    audit_events,
    bearer,
    create_user,
    login,
    rich_error,
    update_user,
    who_am_i,
)
from tests.support.server import JWT_SECRET, RunningServer

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
NONE_HEADER = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()


def _pem_pair() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


@pytest.fixture
def server_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """HS256 with the test secret by default; RS256 with fresh key files when parametrized with "RS256"."""
    if getattr(request, "param", None) != "RS256":
        return {}
    private, public = _pem_pair()
    (tmp_path / "jwt.key").write_bytes(private)
    (tmp_path / "jwt.pub").write_bytes(public)
    return {
        "BATON_JWT_ALGORITHM": "RS256",
        "BATON_JWT_PRIVATE_KEY_FILE": str(tmp_path / "jwt.key"),
        "BATON_JWT_PUBLIC_KEY_FILE": str(tmp_path / "jwt.pub"),
    }


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_by_hand(claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 JWT signed with any bytes (PyJWT refuses a PEM key as an HMAC secret; an attacker does not)."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def claims_of(token: str, **changes: Any) -> dict[str, Any]:
    """The claims of a real token with a fresh jti and the given changes (None removes a claim)."""
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    claims["jti"] = secrets.token_urlsafe(16)
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


async def alice(running: RunningServer) -> auth_pb2.LoginResponse:
    await create_user(running, "alice", "viewer", human=True)
    return await login(running, "alice")


async def refresh(running: RunningServer, token: str) -> auth_pb2.RefreshTokenResponse:
    stub = auth_pb2_grpc.AuthServiceStub(running.channel)
    return await stub.RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=token), timeout=5)


async def revoke(running: RunningServer, token: str) -> None:
    stub = auth_pb2_grpc.AuthServiceStub(running.channel)
    await stub.RevokeToken(auth_pb2.RevokeTokenRequest(refresh_token=token), timeout=5)


async def test_login_gives_a_working_access_token(server: RunningServer) -> None:
    granted = await alice(server)
    assert granted.user.username == "alice"
    assert granted.refresh_token
    assert granted.access_token != granted.refresh_token
    assert granted.access_token_expire_time.seconds > time.time()
    assert granted.refresh_token_expire_time.seconds > granted.access_token_expire_time.seconds
    me = await who_am_i(server, bearer(granted.access_token))
    assert me.user.id == granted.user.id
    assert me.user.username == "alice"
    assert me.auth_method == "jwt"
    assert "tasks.read" in me.permissions
    assert "users.admin" not in me.permissions


async def test_wrong_password_and_unknown_user_fail_alike(server: RunningServer) -> None:
    await alice(server)
    stub = auth_pb2_grpc.AuthServiceStub(server.channel)
    wrong = await rich_error(
        stub.Login(auth_pb2.LoginRequest(username="alice", password="not the password!")), UNAUTHENTICATED
    )
    unknown = await rich_error(
        stub.Login(auth_pb2.LoginRequest(username="mallory", password=PASSWORD)), UNAUTHENTICATED
    )
    for error in (wrong, unknown):
        assert error.info.reason == "LOGIN_FAILED"
        assert error.info.domain == "baton.dev"
    assert wrong.status.message == unknown.status.message
    assert wrong.error.details() == unknown.error.details()


async def _attack(running: RunningServer, token: str) -> str:
    error = await rich_error(who_am_i(running, bearer(token)), UNAUTHENTICATED)
    return str(error.info.reason)


async def test_forged_tokens_are_refused(server: RunningServer) -> None:
    real = (await alice(server)).access_token
    now = int(time.time())
    secret = JWT_SECRET.encode()
    # The way these tokens are made is right: the same claims signed with the server's secret work.
    control = jwt.encode(claims_of(real), JWT_SECRET, algorithm="HS256")
    assert (await who_am_i(server, bearer(control))).user.username == "alice"
    header, payload, signature = real.split(".")
    forged = {
        "bad signature": f"{header}.{payload}.{b64(b'0' * 32)}",
        "another secret": jwt.encode(claims_of(real), "another-secret-0123456789abcdefghijkl", algorithm="HS256"),
        "tampered payload": f"{header}.{b64(json.dumps(claims_of(real, sub='someone-else')).encode())}.{signature}",
        "alg none": jwt.encode(claims_of(real), None, algorithm="none"),
        "alg none on the real payload": f"{NONE_HEADER}.{payload}.",
        "expired": hs256_by_hand(claims_of(real, iat=now - 3600, nbf=now - 3600, exp=now - 60), secret),
        "not yet valid": hs256_by_hand(claims_of(real, nbf=now + 600, exp=now + 1200), secret),
        "wrong audience": hs256_by_hand(claims_of(real, aud="someone-else"), secret),
        "wrong issuer": hs256_by_hand(claims_of(real, iss="someone-else"), secret),
        "no exp": hs256_by_hand(claims_of(real, exp=None), secret),
        "no ver": hs256_by_hand(claims_of(real, ver=None), secret),
        "old ver": hs256_by_hand(claims_of(real, ver=-1), secret),
        "garbage": "not-a-jwt",
    }
    reasons = {name: await _attack(server, token) for name, token in forged.items()}
    assert reasons.pop("expired") == "TOKEN_EXPIRED"
    assert set(reasons.values()) == {"TOKEN_INVALID"}, reasons


@pytest.mark.parametrize("server_env", ["RS256"], indirect=True)
async def test_rs256_server_refuses_key_confusion(server: RunningServer) -> None:
    granted = await alice(server)
    assert jwt.get_unverified_header(granted.access_token)["alg"] == "RS256"
    assert (await who_am_i(server, bearer(granted.access_token))).auth_method == "jwt"
    private_pem = Path(server.config.auth.jwt_private_key_file or "").read_bytes()
    public_pem = Path(server.config.auth.jwt_public_key_file or "").read_bytes()
    claims = claims_of(granted.access_token)
    control = jwt.encode(claims, serialization.load_pem_private_key(private_pem, None), algorithm="RS256")
    assert (await who_am_i(server, bearer(control))).user.username == "alice"
    other_private, _ = _pem_pair()
    forged = {
        "HS256 keyed with the public PEM": hs256_by_hand(claims_of(granted.access_token), public_pem),
        "HS256 keyed with the stripped public PEM": hs256_by_hand(claims_of(granted.access_token), public_pem.strip()),
        "HS256 with the old test secret": hs256_by_hand(claims_of(granted.access_token), JWT_SECRET.encode()),
        "RS256 from another key": jwt.encode(
            claims_of(granted.access_token),
            serialization.load_pem_private_key(other_private, None),
            algorithm="RS256",
        ),
        "alg none": jwt.encode(claims_of(granted.access_token), None, algorithm="none"),
    }
    reasons = {name: await _attack(server, token) for name, token in forged.items()}
    assert set(reasons.values()) == {"TOKEN_INVALID"}, reasons


async def test_refresh_rotates_and_reuse_revokes_the_family(server: RunningServer) -> None:
    first = await alice(server)
    second = await refresh(server, first.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    assert (await who_am_i(server, bearer(second.access_token))).user.username == "alice"
    reuse = await rich_error(refresh(server, first.refresh_token), UNAUTHENTICATED)
    assert reuse.info.reason == "TOKEN_REUSED"
    # The reuse revoked the whole family, the token handed out by the rotation included.
    await rich_error(refresh(server, second.refresh_token), UNAUTHENTICATED)
    [event] = await audit_events(server, 'action = "refresh_token.reuse_detected"')
    assert event.outcome == "denied"
    assert event.principal_id == first.user.id
    # Another login starts a new family that works.
    third = await login(server, "alice")
    assert (await refresh(server, third.refresh_token)).access_token


async def test_revoke_token(server: RunningServer) -> None:
    granted = await alice(server)
    await revoke(server, granted.refresh_token)
    await revoke(server, granted.refresh_token)  # idempotent
    await revoke(server, "never-issued")  # unknown tokens succeed too, revealing nothing
    await rich_error(refresh(server, granted.refresh_token), UNAUTHENTICATED)
    events = await audit_events(server, 'action = "token.revoked"', at_least=3)
    assert len(events) == 3


async def test_bad_refresh_tokens(server: RunningServer) -> None:
    stub = auth_pb2_grpc.AuthServiceStub(server.channel)
    bad = await rich_error(refresh(server, "x" * 43), UNAUTHENTICATED)
    assert bad.info.reason == "TOKEN_INVALID"
    empty = await rich_error(stub.RefreshToken(auth_pb2.RefreshTokenRequest()), grpc.StatusCode.INVALID_ARGUMENT)
    assert "refresh_token" in empty.violations


async def test_user_changes_invalidate_access_tokens(server: RunningServer) -> None:
    granted = await alice(server)
    user = granted.user
    user.display_name = "Alice A."
    await update_user(server, user, "display_name")
    stale = await rich_error(who_am_i(server, bearer(granted.access_token)), UNAUTHENTICATED)
    assert stale.info.reason == "TOKEN_INVALID"
    renewed = await refresh(server, granted.refresh_token)
    assert (await who_am_i(server, bearer(renewed.access_token))).user.display_name == "Alice A."


async def test_disabled_user_cannot_log_in_or_use_tokens(server: RunningServer) -> None:
    granted = await alice(server)
    user = granted.user
    user.disabled = True
    await update_user(server, user, "disabled")
    await rich_error(who_am_i(server, bearer(granted.access_token)), UNAUTHENTICATED)
    await rich_error(refresh(server, granted.refresh_token), UNAUTHENTICATED)
    refused = await rich_error(login(server, "alice"), UNAUTHENTICATED)
    assert refused.info.reason == "PRINCIPAL_DISABLED"


async def test_logins_are_audited(server: RunningServer) -> None:
    granted = await alice(server)
    await rich_error(login(server, "alice", "wrong password 123"), UNAUTHENTICATED)
    await rich_error(login(server, "nobody-here", "wrong password 123"), UNAUTHENTICATED)
    [succeeded] = await audit_events(server, 'action = "login.succeeded"')
    assert succeeded.outcome == "ok"
    assert succeeded.principal_id == granted.user.id
    assert succeeded.details["username"] == "alice"
    failed = await audit_events(server, 'action = "login.failed" AND outcome = "failed"', at_least=2)
    assert {(e.details["username"], e.details["reason"]) for e in failed} == {
        ("alice", "bad_password"),
        ("nobody-here", "unknown_user"),
    }
    assert all(e.request_id and e.peer for e in failed)
    assert all("wrong password" not in str(e) for e in failed)
