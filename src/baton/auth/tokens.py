"""Access tokens (signed JWTs) and refresh tokens (opaque random strings, stored as SHA-256 digests).

Access tokens carry iss, aud, sub (the principal id), iat, nbf, exp, jti and `ver`, the principal's revision
when the token was issued: every update of the principal (roles, disabled flag, password, display name) bumps
the revision, so outstanding tokens stop working once the authenticator's principal cache notices (at once on
the replica that made the change, within BATON_API_KEY_CACHE_SECONDS elsewhere); RefreshToken issues a
token of the new revision. Verification accepts only the
configured algorithm, so `alg: none` and HS/RS key confusion are refused by construction.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any

import structlog

from baton.config import AuthConfig
from baton.errors import Unauthenticated

log = structlog.get_logger(__name__)

LEEWAY_SECONDS = 5.0
REFRESH_TOKEN_BYTES = 32
_REQUIRED_CLAIMS = ["exp", "nbf", "iat", "iss", "aud", "sub", "jti"]

if TYPE_CHECKING:
    import jwt


@functools.cache
def _pyjwt() -> ModuleType:
    """PyJWT, imported on first use: it loads `cryptography`, which costs more start-up time than the rest of
    the auth stack together (the server warms it up in the background once it serves)."""
    return importlib.import_module("jwt")


@functools.cache
def _problems() -> tuple[tuple[type[jwt.PyJWTError], str], ...]:
    """What each PyJWT failure tells the caller; PyJWT's own messages are not passed on."""
    pyjwt = _pyjwt()
    return (
        (pyjwt.InvalidAlgorithmError, "its signing algorithm is not accepted"),
        (pyjwt.InvalidSignatureError, "its signature does not verify"),
        (pyjwt.ImmatureSignatureError, "it is not valid yet"),
        (pyjwt.InvalidAudienceError, "it is for another audience"),
        (pyjwt.InvalidIssuerError, "it is from another issuer"),
        (pyjwt.DecodeError, "it is not a well-formed JWT"),
    )


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A signed access token and what the caller needs to know about it."""

    token: str
    jti: str
    expire_time: datetime


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """The verified claims Baton uses."""

    subject: str
    jti: str
    version: int
    expires_at: float


class TokenCodec:
    """Issues and verifies access tokens with one algorithm and key pair (or HMAC secret)."""

    def __init__(
        self,
        *,
        algorithm: str,
        signing_key: Any,
        verification_key: Any,
        issuer: str,
        audience: str,
        ttl_seconds: int,
        leeway_seconds: float = LEEWAY_SECONDS,
        clock: Callable[[], float] = time.time,
        ephemeral: bool = False,
    ) -> None:
        self.algorithm = algorithm
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds
        self.leeway_seconds = leeway_seconds
        self.ephemeral = ephemeral
        self._signing_key = signing_key
        self._verification_key = verification_key
        self._clock = clock

    @classmethod
    def from_config(cls, config: AuthConfig, *, clock: Callable[[], float] = time.time) -> TokenCodec:
        """A codec for the configured algorithm and key material.

        Without a secret or key files (HS256 only) a random secret is made and a warning logged: tokens then
        do not survive a restart and are not accepted by other replicas. A key pair that does not match
        raises ValueError at start rather than failing every call.
        """
        signing_key: Any
        verification_key: Any
        ephemeral = False
        if config.jwt_algorithm == "HS256":
            if config.jwt_secret is not None:
                signing_key = verification_key = config.jwt_secret.get_secret_value().encode()
            else:
                signing_key = verification_key = secrets.token_bytes(32)
                ephemeral = True
                log.warning(
                    "jwt_secret_generated",
                    message="BATON_JWT_SECRET is not set: access tokens are signed with a random secret made at "
                    "start; they will not survive a restart or work across replicas",
                )
        else:
            if config.jwt_private_key_file is None or config.jwt_public_key_file is None:
                raise ValueError(f"BATON_JWT_ALGORITHM={config.jwt_algorithm} needs both key files")
            from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

            signing_key = load_pem_private_key(config.jwt_private_key_file.read_bytes(), password=None)
            verification_key = load_pem_public_key(config.jwt_public_key_file.read_bytes())
        codec = cls(
            algorithm=config.jwt_algorithm,
            signing_key=signing_key,
            verification_key=verification_key,
            issuer=config.jwt_issuer,
            audience=config.jwt_audience,
            ttl_seconds=config.access_token_ttl_seconds,
            clock=clock,
            ephemeral=ephemeral,
        )
        if config.jwt_algorithm == "HS256":
            return codec
        try:
            codec.verify(codec.issue("key-check", 0).token)
        except Unauthenticated:
            raise ValueError(
                "BATON_JWT_PRIVATE_KEY_FILE and BATON_JWT_PUBLIC_KEY_FILE are not a matching key pair "
                f"for {config.jwt_algorithm}"
            ) from None
        return codec

    def issue(self, subject: str, version: int) -> IssuedToken:
        """A new access token for principal `subject` at revision `version`."""
        now = int(self._clock())
        expires_at = now + self.ttl_seconds
        jti = secrets.token_urlsafe(16)
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": expires_at,
            "jti": jti,
            "ver": version,
        }
        token: str = _pyjwt().encode(claims, self._signing_key, algorithm=self.algorithm)
        return IssuedToken(token=token, jti=jti, expire_time=datetime.fromtimestamp(expires_at, UTC))

    def verify(self, token: str) -> TokenClaims:
        """The claims of a valid token; Unauthenticated (TOKEN_EXPIRED or TOKEN_INVALID) otherwise."""
        pyjwt = _pyjwt()
        try:
            claims = pyjwt.decode(
                token,
                self._verification_key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": _REQUIRED_CLAIMS},
            )
        except pyjwt.ExpiredSignatureError:
            raise Unauthenticated(
                "the access token has expired; get a new one with RefreshToken or Login", reason="TOKEN_EXPIRED"
            ) from None
        except pyjwt.MissingRequiredClaimError as error:
            raise _invalid(f"it lacks the {error.claim!r} claim") from None
        except pyjwt.PyJWTError as error:
            problem = next((text for kind, text in _problems() if isinstance(error, kind)), "it does not verify")
            raise _invalid(problem) from None
        subject, jti, version = claims.get("sub"), claims.get("jti"), claims.get("ver")
        if not isinstance(subject, str) or not subject or not isinstance(jti, str):
            raise _invalid("its sub or jti claim is not a non-empty string")
        if not isinstance(version, int) or isinstance(version, bool):
            raise _invalid("it lacks an integer 'ver' claim")
        return TokenClaims(subject=subject, jti=jti, version=version, expires_at=float(claims["exp"]))


def _invalid(problem: str) -> Unauthenticated:
    return Unauthenticated(f"the access token is invalid: {problem}", reason="TOKEN_INVALID")


def new_refresh_token() -> str:
    """A new opaque refresh token: 32 random bytes, URL-safe base64 without padding."""
    return secrets.token_urlsafe(REFRESH_TOKEN_BYTES)


def token_digest(token: str) -> str:
    """SHA-256 of a token, hex; refresh tokens are stored only in this form."""
    return hashlib.sha256(token.encode()).hexdigest()
