"""Access tokens: issue and verify, and the attacks verification must refuse."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from pydantic import SecretStr
from structlog.testing import capture_logs

from baton.auth import TokenCodec
from baton.auth.tokens import new_refresh_token, token_digest
from baton.config import AuthConfig
from baton.errors import Unauthenticated

SECRET = b"test-secret-test-secret-test-secret!"  # the codec fixture's


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": "baton", "aud": "baton", "sub": "u1", "iat": now, "nbf": now, "exp": now + 600}
    return base | {"jti": "j1", "ver": 1} | overrides


def hs256(payload: dict[str, Any], key: bytes = SECRET) -> str:
    return jwt.encode(payload, key, algorithm="HS256")


def refused(codec: TokenCodec, token: str) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as caught:
        codec.verify(token)
    assert len(token) < 5 or token not in caught.value.message
    return caught.value


def write_pem_pair(tmp_path: Path, private_key: Any) -> tuple[Path, Path]:
    private_file, public_file = tmp_path / "jwt.key", tmp_path / "jwt.pub"
    private_file.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public_file.write_bytes(
        private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private_file, public_file


def test_issue_and_verify_round_trip(codec: TokenCodec) -> None:
    issued = codec.issue("user-1", 7)
    verified = codec.verify(issued.token)
    assert (verified.subject, verified.jti, verified.version) == ("user-1", issued.jti, 7)
    assert verified.expires_at == issued.expire_time.timestamp()
    payload = jwt.decode(issued.token, options={"verify_signature": False})
    assert set(payload) == {"iss", "aud", "sub", "iat", "nbf", "exp", "jti", "ver"}
    assert payload["exp"] - payload["iat"] == 900


def test_bad_signature_is_refused(codec: TokenCodec) -> None:
    error = refused(codec, hs256(claims(), key=b"another-secret-another-secret-1234"))
    assert error.reason == "TOKEN_INVALID"
    assert "signature" in error.message


def test_tampered_payload_is_refused(codec: TokenCodec) -> None:
    header, _, signature = codec.issue("user-1", 1).token.split(".")
    forged = b64(json.dumps(claims(sub="admin")).encode())
    assert refused(codec, f"{header}.{forged}.{signature}").reason == "TOKEN_INVALID"


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused(codec: TokenCodec, alg: str) -> None:
    header = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims()).encode())
    for token in (f"{header}.{payload}.", f"{header}.{payload}"):
        assert refused(codec, token).reason == "TOKEN_INVALID"


def test_hs_rs_confusion_is_refused(tmp_path: Path) -> None:
    private_file, public_file = write_pem_pair(tmp_path, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    config = AuthConfig(jwt_algorithm="RS256", jwt_private_key_file=private_file, jwt_public_key_file=public_file)
    codec = TokenCodec.from_config(config)
    assert codec.verify(codec.issue("user-1", 1).token).subject == "user-1"
    # The classic attack: an HS256 token whose HMAC secret is the (public) RSA key.
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims()).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = b64(hmac.new(public_file.read_bytes(), signing_input, hashlib.sha256).digest())
    error = refused(codec, f"{header}.{payload}.{signature}")
    assert error.reason == "TOKEN_INVALID"
    assert "algorithm" in error.message


def test_expired_token_is_refused(codec: TokenCodec) -> None:
    now = int(time.time())
    error = refused(codec, hs256(claims(iat=now - 1000, nbf=now - 1000, exp=now - 60)))
    assert error.reason == "TOKEN_EXPIRED"


def test_leeway_is_small(codec: TokenCodec) -> None:
    now = int(time.time())
    assert codec.verify(hs256(claims(exp=now - 2))).subject == "u1"  # within the 5 s leeway
    assert refused(codec, hs256(claims(exp=now - 30))).reason == "TOKEN_EXPIRED"


def test_not_yet_valid_token_is_refused(codec: TokenCodec) -> None:
    now = int(time.time())
    error = refused(codec, hs256(claims(nbf=now + 120, exp=now + 900)))
    assert error.reason == "TOKEN_INVALID"
    assert "not valid yet" in error.message
    assert refused(codec, hs256(claims(iat=now + 120))).reason == "TOKEN_INVALID"


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [({"aud": "someone-else"}, "audience"), ({"iss": "evil"}, "issuer")],
)
def test_wrong_audience_or_issuer_is_refused(codec: TokenCodec, overrides: dict[str, str], problem: str) -> None:
    error = refused(codec, hs256(claims(**overrides)))
    assert error.reason == "TOKEN_INVALID"
    assert problem in error.message


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat", "iss", "aud", "sub", "jti", "ver"])
def test_missing_claims_are_refused(codec: TokenCodec, claim: str) -> None:
    payload = claims()
    del payload[claim]
    error = refused(codec, hs256(payload))
    assert error.reason == "TOKEN_INVALID"
    assert claim in error.message


@pytest.mark.parametrize(
    "overrides", [{"ver": "1"}, {"ver": True}, {"sub": ""}, {"jti": 5}], ids=["ver-str", "ver-bool", "sub", "jti"]
)
def test_claims_of_the_wrong_type_are_refused(codec: TokenCodec, overrides: dict[str, Any]) -> None:
    assert refused(codec, hs256(claims(**overrides))).reason == "TOKEN_INVALID"


@pytest.mark.parametrize(
    "garbage", ["", "x", "a.b", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9.e30.", "é.é.é", "Bearer abc", "\x00" * 10]
)
def test_garbage_is_refused(codec: TokenCodec, garbage: str) -> None:
    assert refused(codec, garbage).reason == "TOKEN_INVALID"


@pytest.mark.parametrize(
    ("algorithm", "make_key"),
    [
        ("ES256", lambda: ec.generate_private_key(ec.SECP256R1())),
        ("EdDSA", ed25519.Ed25519PrivateKey.generate),
    ],
)
def test_asymmetric_algorithms(tmp_path: Path, algorithm: str, make_key: Any) -> None:
    private_file, public_file = write_pem_pair(tmp_path, make_key())
    config = AuthConfig(jwt_algorithm=algorithm, jwt_private_key_file=private_file, jwt_public_key_file=public_file)
    codec = TokenCodec.from_config(config)
    token = codec.issue("user-1", 3).token
    assert jwt.get_unverified_header(token)["alg"] == algorithm
    assert codec.verify(token).version == 3


def test_mismatched_key_pair_stops_the_start(tmp_path: Path) -> None:
    private_file, _ = write_pem_pair(tmp_path, ec.generate_private_key(ec.SECP256R1()))
    (tmp_path / "other").mkdir()
    _, other_public = write_pem_pair(tmp_path / "other", ec.generate_private_key(ec.SECP256R1()))
    config = AuthConfig(jwt_algorithm="ES256", jwt_private_key_file=private_file, jwt_public_key_file=other_public)
    with pytest.raises(ValueError, match="not a matching key pair"):
        TokenCodec.from_config(config)


def test_configured_secret_survives_a_restart() -> None:
    config = AuthConfig(jwt_secret=SecretStr("s" * 40))
    token = TokenCodec.from_config(config).issue("user-1", 1).token
    assert TokenCodec.from_config(config).verify(token).subject == "user-1"


def test_without_a_secret_a_random_one_is_made_with_a_warning() -> None:
    with capture_logs() as logs:
        first, second = TokenCodec.from_config(AuthConfig()), TokenCodec.from_config(AuthConfig())
    assert first.ephemeral
    assert logs[0]["log_level"] == "warning"
    assert "will not survive a restart" in logs[0]["message"]
    token = first.issue("user-1", 1).token
    assert first.verify(token).subject == "user-1"
    with pytest.raises(Unauthenticated):
        second.verify(token)  # another replica, or after a restart


def test_refresh_tokens_are_random_and_stored_as_digests() -> None:
    tokens = {new_refresh_token() for _ in range(100)}
    assert len(tokens) == 100
    token = tokens.pop()
    assert len(token) == 43
    assert "=" not in token
    assert token_digest(token) == hashlib.sha256(token.encode()).hexdigest()
