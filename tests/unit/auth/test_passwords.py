"""Password hashing: argon2id, verification (also of unknown users), rehash detection, length rules."""

from __future__ import annotations

from argon2 import PasswordHasher

from baton.auth import Passwords
from baton.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, password_violations


def test_hash_is_argon2id_and_salted(passwords: Passwords) -> None:
    first, second = passwords.hash("a good long password"), passwords.hash("a good long password")
    assert first.startswith("$argon2id$")
    assert first != second
    assert "a good long password" not in first


def test_verify(passwords: Passwords) -> None:
    stored = passwords.hash("a good long password")
    assert passwords.verify(stored, "a good long password")
    assert not passwords.verify(stored, "a good long passworD")
    assert not passwords.verify(stored, "")


class CountingHasher(PasswordHasher):
    """Counts verify calls."""

    calls: list[str]

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.calls.append(str(hash))
        return super().verify(hash, password)


def test_unknown_user_costs_one_verify_and_fails() -> None:
    hasher = CountingHasher(time_cost=1, memory_cost=1024, parallelism=1)
    hasher.calls = []
    counted = Passwords(hasher)
    assert not counted.verify(None, "anything at all")
    assert len(hasher.calls) == 1
    assert hasher.calls[0].startswith("$argon2id$")


def test_garbage_hash_is_a_mismatch(passwords: Passwords) -> None:
    assert not passwords.verify("not-a-hash", "a good long password")
    assert passwords.needs_rehash("not-a-hash")


def test_needs_rehash_when_parameters_change(passwords: Passwords) -> None:
    stored = passwords.hash("a good long password")
    assert not passwords.needs_rehash(stored)
    stronger = Passwords(PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1))
    assert stronger.needs_rehash(stored)
    assert stronger.verify(stored, "a good long password")  # old hashes still verify


def test_password_rules() -> None:
    assert password_violations("x" * MIN_PASSWORD_LENGTH) == []
    [short] = password_violations("x" * (MIN_PASSWORD_LENGTH - 1))
    assert short.field == "password"
    assert "at least 12" in short.description
    [long] = password_violations("x" * (MAX_PASSWORD_LENGTH + 1), field="user.password")
    assert long.field == "user.password"
