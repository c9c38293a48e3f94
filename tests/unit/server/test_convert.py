"""Timestamps for datetimes: exact, naive taken as UTC, and shared safely (a message copies the one it is given)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from baton.server import convert
from baton.server.convert import from_timestamp, timestamp
from baton.v1 import tasks_pb2


def test_timestamps_are_exact_in_any_zone_and_naive_ones_are_utc() -> None:
    moment = datetime(2026, 12, 4, 19, 30, 1, 123456, tzinfo=UTC)
    made = timestamp(moment)
    assert made is not None
    assert (made.seconds, made.nanos) == (int(moment.timestamp()), 123456000)
    assert timestamp(moment.astimezone(timezone(timedelta(hours=-5)))) == made
    assert timestamp(moment.replace(tzinfo=None)) == made
    assert from_timestamp(made) == moment
    assert timestamp(None) is None
    before_epoch = timestamp(datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC))
    assert before_epoch is not None
    assert (before_epoch.seconds, before_epoch.nanos) == (-1, 500000000)


def test_a_shared_timestamp_is_copied_into_each_message() -> None:
    """The same datetime gives the same kept message; messages built from it hold copies, so a change to one
    response reaches neither the others nor the kept message."""
    moment = datetime(2026, 12, 4, 19, 30, 2, tzinfo=UTC)
    shared = timestamp(moment)
    assert timestamp(moment) is shared
    first = tasks_pb2.Task(create_time=shared, update_time=shared)
    second = tasks_pb2.Task(create_time=shared)
    first.create_time.seconds += 60
    assert second.create_time == shared
    assert first.update_time == shared
    assert timestamp(moment) == tasks_pb2.Task(create_time=timestamp(moment)).create_time
    assert shared is not None
    assert shared.seconds == int(moment.timestamp())


def test_the_kept_timestamps_are_bounded() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(3 * convert._TIMESTAMPS_KEPT):
        timestamp(start + timedelta(microseconds=n))
    assert len(convert._timestamps) <= convert._TIMESTAMPS_KEPT
