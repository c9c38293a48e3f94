"""API keys: `bk_<key_id>_<secret>`, stored as a SHA-256 digest only, and a recorder of when keys were used.

`key_id` is 12 random characters of [a-z0-9] and doubles as the key's row id; the secret is 32 random bytes in
unpadded URL-safe base64. People see the `prefix` (`bk_<key_id>`) and never the key after creation. Keys given
from outside (the bootstrap admin key) need not follow the format; they are found by their digest instead.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime

KEY_SCHEME = "bk_"
KEY_ID_LENGTH = 12
SECRET_BYTES = 32
#: Keys outside these bounds are refused without a database lookup.
MIN_KEY_LENGTH = 32
MAX_KEY_LENGTH = 256
#: Prefix stored for keys given from outside, which carry no key id.
CUSTOM_KEY_PREFIX = "(custom)"

_KEY_ID_ALPHABET = string.ascii_lowercase + string.digits
_FORMAT = re.compile(rf"{KEY_SCHEME}([a-z0-9]{{{KEY_ID_LENGTH}}})_[A-Za-z0-9_-]{{43}}")
_PRINTABLE = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """A freshly made key: the key itself (shown once) and what is stored of it."""

    key_id: str
    key: str
    prefix: str
    key_hash: str


def key_digest(key: str) -> str:
    """SHA-256 of the key, hex; the only form in which a key is stored."""
    return hashlib.sha256(key.encode()).hexdigest()


def digests_match(stored: str, presented: str) -> bool:
    """Constant-time comparison of two digests."""
    return hmac.compare_digest(stored.encode(), presented.encode())


def new_key_id() -> str:
    """12 random characters of [a-z0-9] (about 62 bits)."""
    return "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(KEY_ID_LENGTH))


def generate_api_key() -> NewApiKey:
    """A new random key in the `bk_<key_id>_<secret>` format."""
    key_id = new_key_id()
    secret = secrets.token_urlsafe(SECRET_BYTES)  # 32 bytes -> 43 characters, no padding
    key = f"{KEY_SCHEME}{key_id}_{secret}"
    return NewApiKey(key_id=key_id, key=key, prefix=f"{KEY_SCHEME}{key_id}", key_hash=key_digest(key))


def adopt_api_key(key: str) -> NewApiKey:
    """Describe a key given from outside: its own key id when it follows the format, else a new id."""
    key_id = parse_key_id(key)
    if key_id is not None:
        return NewApiKey(key_id=key_id, key=key, prefix=f"{KEY_SCHEME}{key_id}", key_hash=key_digest(key))
    return NewApiKey(key_id=new_key_id(), key=key, prefix=CUSTOM_KEY_PREFIX, key_hash=key_digest(key))


def parse_key_id(key: str) -> str | None:
    """The key id of a key in the `bk_` format, else None."""
    match = _FORMAT.fullmatch(key)
    return match.group(1) if match else None


def is_plausible_key(key: str) -> bool:
    """Whether `key` could be a key at all (length and printable ASCII); others are refused unread."""
    return MIN_KEY_LENGTH <= len(key) <= MAX_KEY_LENGTH and _PRINTABLE.fullmatch(key) is not None


class UsageRecorder:
    """Remembers when each key was last used, in memory, until `drain()` hands the times over for one write.

    Recording is a dict store (no I/O); the authenticator drains it once per flush interval, so each key costs
    at most one UPDATE per interval however often it is used.
    """

    def __init__(self) -> None:
        self._last_used: dict[str, float] = {}

    def record(self, key_id: str, when: float) -> None:
        """Note that `key_id` was used at `when` (seconds since the epoch)."""
        self._last_used[key_id] = when

    def drain(self) -> dict[str, datetime]:
        """The uses recorded since the last drain, as UTC times, and forget them."""
        pending, self._last_used = self._last_used, {}
        return {key_id: datetime.fromtimestamp(when, UTC) for key_id, when in pending.items()}

    def restore(self, pending: dict[str, datetime]) -> None:
        """Put back uses whose write failed, keeping any newer use recorded since."""
        for key_id, when in pending.items():
            timestamp = when.timestamp()
            if self._last_used.get(key_id, 0.0) < timestamp:
                self._last_used[key_id] = timestamp

    def __len__(self) -> int:
        return len(self._last_used)
