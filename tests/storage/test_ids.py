"""UUIDv7 identifiers: valid RFC 9562 values, strictly increasing, as UUIDs and as text."""

from __future__ import annotations

import itertools
import threading
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from baton.store.ids import Uuid7Generator, id_time, new_id, uuid7


def assert_valid_uuid7(value: uuid.UUID) -> None:
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert len(str(value)) == 36


def test_new_id_is_a_version_7_uuid_with_the_rfc_variant() -> None:
    identifier = new_id()

    assert_valid_uuid7(uuid.UUID(identifier))
    assert identifier == identifier.lower()


def test_ids_sort_in_creation_order_as_text() -> None:
    ids = [new_id() for _ in range(10_000)]

    assert sorted(ids) == ids
    assert len(set(ids)) == len(ids)


def test_id_time_is_the_creation_time() -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    created = id_time(new_id())
    after = datetime.now(UTC)

    assert before <= created <= after
    assert created.tzinfo is UTC


def test_full_counter_moves_on_to_the_next_millisecond() -> None:
    generate = Uuid7Generator(clock_ns=lambda: 5_000_000)
    first = generate()
    generate._counter = (1 << 42) - 1  # the last value of this millisecond

    second = generate()

    assert second > first
    assert id_time(second) == id_time(first) + timedelta(milliseconds=1)
    assert_valid_uuid7(second)


def test_ids_from_many_threads_are_unique() -> None:
    made: list[list[uuid.UUID]] = [[] for _ in range(8)]

    def worker(out: list[uuid.UUID]) -> None:
        out.extend(uuid7() for _ in range(2_000))

    threads = [threading.Thread(target=worker, args=(out,)) for out in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    every = [value for out in made for value in out]
    assert len(set(every)) == len(every)
    assert all(out == sorted(out) for out in made)


@given(st.lists(st.integers(min_value=0, max_value=2**47), min_size=1, max_size=200))
def test_ids_increase_whatever_the_clock_does(clock_ms: list[int]) -> None:
    """Clock readings jump forwards, backwards or stand still: IDs still increase, as UUIDs and as text."""
    readings = iter(clock_ms)
    generate = Uuid7Generator(clock_ns=lambda: next(readings) * 1_000_000)

    made = [generate() for _ in clock_ms]

    for value in made:
        assert_valid_uuid7(value)
    assert all(a < b for a, b in itertools.pairwise(made))
    assert [str(value) for value in made] == sorted(str(value) for value in made)
    # The embedded time is the latest reading so far: an earlier one reuses it.
    for index, value in enumerate(made):
        assert value.int >> 80 == max(clock_ms[: index + 1])
