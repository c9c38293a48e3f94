"""Time-ordered identifiers: UUIDv7 (RFC 9562), strictly increasing within a process.

Layout: 48-bit Unix time in milliseconds, version 7, a 42-bit counter (the 12 `rand_a` bits and the top 30
`rand_b` bits, RFC 9562 §6.2 method 1, seeded randomly every millisecond), the variant, 32 random bits.
The generator's clock never goes backwards: an earlier reading, or a full counter, reuses or advances the last
millisecond, so every ID sorts after the one before it, as text too.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

_COUNTER_BITS = 42
_COUNTER_SEED_BITS = 41  # a fresh millisecond leaves half of the counter's range for increments


class Uuid7Generator:
    """Makes UUIDv7 values from a clock (`time.time_ns` by default); thread-safe."""

    def __init__(self, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self._clock_ns = clock_ns
        self._lock = threading.Lock()
        self._last_ms = -1
        self._counter = 0
        self._pool = b""
        self._spent = 0
        os.register_at_fork(after_in_child=self._forked)

    def __call__(self) -> uuid.UUID:
        """The next identifier; greater than every one this generator made before."""
        return uuid.UUID(int=self.next_int())

    def next_int(self) -> int:
        """The next identifier as its 128-bit integer."""
        with self._lock:
            now_ms = self._clock_ns() // 1_000_000
            if now_ms > self._last_ms:
                self._last_ms, self._counter = now_ms, secrets.randbits(_COUNTER_SEED_BITS)
            elif self._counter + 1 < 1 << _COUNTER_BITS:
                self._counter += 1
            else:
                self._last_ms, self._counter = self._last_ms + 1, secrets.randbits(_COUNTER_SEED_BITS)
            millis, counter = self._last_ms, self._counter
            # The 32 random bits come from the OS 4 KiB at a time rather than one system call per identifier.
            if self._spent >= len(self._pool):
                self._pool, self._spent = os.urandom(4096), 0
            random_bits = int.from_bytes(self._pool[self._spent : self._spent + 4])
            self._spent += 4
        value = (millis & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (counter >> 30) << 64
        return value | 0b10 << 62 | (counter & 0x3FFF_FFFF) << 32 | random_bits

    def _forked(self) -> None:
        """In a forked child: nothing drawn or counted by the parent is reused."""
        self._lock = threading.Lock()
        self._last_ms, self._counter, self._pool, self._spent = -1, 0, b"", 0


uuid7 = Uuid7Generator()


def new_id() -> str:
    """A new UUIDv7 as its 36-character text form, the primary key of time-ordered rows."""
    text = f"{uuid7.next_int():032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def id_time(identifier: str | uuid.UUID) -> datetime:
    """The creation time (millisecond precision, UTC) embedded in a UUIDv7."""
    value = identifier if isinstance(identifier, uuid.UUID) else uuid.UUID(identifier)
    return datetime.fromtimestamp((value.int >> 80) / 1000, tz=UTC)
