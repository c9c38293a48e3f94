"""API key format, digests and the in-memory record of key use."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

from baton.auth.api_keys import (
    CUSTOM_KEY_PREFIX,
    UsageRecorder,
    adopt_api_key,
    digests_match,
    generate_api_key,
    is_plausible_key,
    key_digest,
    parse_key_id,
)


def test_generated_key_format() -> None:
    key = generate_api_key()
    assert re.fullmatch(r"bk_[a-z0-9]{12}_[A-Za-z0-9_-]{43}", key.key)
    assert key.prefix == f"bk_{key.key_id}"
    assert key.key.startswith(key.prefix + "_")
    assert key.key_hash == hashlib.sha256(key.key.encode()).hexdigest()
    assert parse_key_id(key.key) == key.key_id
    assert is_plausible_key(key.key)


def test_generated_keys_are_unique() -> None:
    keys = [generate_api_key() for _ in range(200)]
    assert len({k.key for k in keys}) == len({k.key_id for k in keys}) == 200


def test_parse_key_id_refuses_other_shapes() -> None:
    key = generate_api_key().key
    for other in ("", "bk_", key[:-1], key + "x", key.upper(), "xx" + key[2:], key.replace("_", "-", 1)):
        assert parse_key_id(other) is None


def test_keys_given_from_outside() -> None:
    custom = adopt_api_key("s" * 40)
    assert custom.prefix == CUSTOM_KEY_PREFIX
    assert re.fullmatch(r"[a-z0-9]{12}", custom.key_id)
    assert custom.key_hash == key_digest("s" * 40)
    formatted = generate_api_key()
    assert adopt_api_key(formatted.key).key_id == formatted.key_id


def test_plausibility() -> None:
    assert not is_plausible_key("short")
    assert not is_plausible_key("x" * 300)
    assert not is_plausible_key("x" * 31 + " ")
    assert not is_plausible_key("x" * 31 + "é")
    assert is_plausible_key("x" * 32)


def test_digest_comparison() -> None:
    digest = key_digest("k" * 40)
    assert digests_match(digest, key_digest("k" * 40))
    assert not digests_match(digest, key_digest("k" * 41))


def test_usage_recorder_keeps_the_latest_use_per_key() -> None:
    usage = UsageRecorder()
    for when in (100.0, 300.0, 200.0):
        usage.record("a", when)
    usage.record("b", 50.0)
    assert len(usage) == 2
    drained = usage.drain()
    assert drained == {"a": datetime.fromtimestamp(200.0, UTC), "b": datetime.fromtimestamp(50.0, UTC)}
    assert len(usage) == 0
    usage.record("a", 250.0)
    usage.restore(drained)  # a failed write is put back without losing the newer use
    assert usage.drain() == {"a": datetime.fromtimestamp(250.0, UTC), "b": datetime.fromtimestamp(50.0, UTC)}
