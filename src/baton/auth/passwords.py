"""Password hashing with argon2id: hash, verify (constant time, even for unknown users) and rehash on login.

Verification is CPU-bound (tens of milliseconds with the default parameters); callers on the event loop run it
in a thread (`asyncio.to_thread`) — argon2-cffi releases the GIL while hashing.
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from baton.errors import FieldViolation

#: Shortest password a person may have.
MIN_PASSWORD_LENGTH = 12
#: Longest password accepted; bounds the work an attacker can make one login cost.
MAX_PASSWORD_LENGTH = 1024


def password_violations(password: str, field: str = "password") -> list[FieldViolation]:
    """What is wrong with a new password for a person (empty when it is acceptable)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return [FieldViolation(field, f"must be at least {MIN_PASSWORD_LENGTH} characters")]
    if len(password) > MAX_PASSWORD_LENGTH:
        return [FieldViolation(field, f"must be at most {MAX_PASSWORD_LENGTH} characters")]
    return []


class Passwords:
    """argon2id hashing; `hasher` defaults to argon2-cffi's recommended parameters (RFC 9106, low memory)."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy: str | None = None

    @property
    def _dummy_hash(self) -> str:
        """Verified against when the user is unknown or has no password, so that every login costs one verify.
        Made on first use: one argon2 hash costs more than the rest of start-up."""
        if self._dummy is None:
            self._dummy = self._hasher.hash(secrets.token_urlsafe(24))
        return self._dummy

    def hash(self, password: str) -> str:
        """A new argon2id hash of `password` with a random salt."""
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """Whether `password` matches `stored_hash`; None (no such user, no password) still spends one verify
        against a dummy hash and returns False, so response times do not reveal which usernames exist."""
        try:
            return self._hasher.verify(stored_hash or self._dummy_hash, password) and stored_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether `stored_hash` was made with other parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True
