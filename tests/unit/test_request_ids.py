"""Fresh request IDs: RFC 9562 UUIDv7 text, the current millisecond, unique, ordered across milliseconds."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from baton.server.interceptors.request_id import fresh_request_id


def test_fresh_ids_are_uuid7_text_of_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    value = fresh_request_id()
    after = time.time_ns() // 1_000_000
    parsed = uuid.UUID(value)
    assert str(parsed) == value  # canonical lower-case 8-4-4-4-12 text
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert before <= parsed.int >> 80 <= after


def test_fresh_ids_are_unique_and_ordered_across_milliseconds() -> None:
    values = []
    deadline = time.monotonic() + 0.05
    while time.monotonic() < deadline or len(values) < 10_000:
        values.append(fresh_request_id())
    assert len(set(values)) == len(values)
    stamps = [uuid.UUID(value).int >> 80 for value in values]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) > 1  # the cached millisecond text moved on
    random_bits = {uuid.UUID(value).int & ((1 << 62) - 1) for value in values}
    assert len(random_bits) == len(values)


def test_every_one_of_the_74_random_bits_varies() -> None:
    # rand_a (12 bits) and rand_b (62 bits): a bit stuck at 0 or 1 would halve the IDs' uniqueness.
    values = [uuid.UUID(fresh_request_id()).int for _ in range(4000)]
    random_positions = [*range(64, 76), *range(62)]
    for bit in random_positions:
        ones = sum(value >> bit & 1 for value in values)
        assert 1500 < ones < 2500, f"bit {bit} is 1 in {ones} of {len(values)} IDs"
    assert {str(uuid.UUID(int=value))[19] for value in values} == set("89ab")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork exists only on POSIX (runs on Linux CI)")
def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next ID and leave at once
        os.write(write, fresh_request_id().encode())
        os._exit(0)
    os.close(write)
    parent = fresh_request_id()
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert uuid.UUID(child).version == 7
    assert uuid.UUID(child).int & ((1 << 62) - 1) != uuid.UUID(parent).int & ((1 << 62) - 1)
