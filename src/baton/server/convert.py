"""Conversions between protobuf well-known types and Python values, shared by the servicers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2

from baton.errors import FieldViolation, InvalidArgument


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp for an aware datetime (naive ones are taken as UTC); None stays None.

    The message is shared: pass it where a message field takes it (a keyword of a message's constructor, or
    `CopyFrom`), which copies it, and never change it. The times of one transaction repeat across a response (a
    task's create and update time, its steps' ready and next-attempt times, the leases of one claim), so the last
    ones made are kept, by datetime: most are then made once."""
    if value is None:
        return None
    made = _timestamps.get(value)
    if made is None:
        # Timestamp.FromDatetime goes through calendar.timegm in Python; a timedelta from the epoch is exact, in C.
        since = (value.replace(tzinfo=UTC) if value.tzinfo is None else value) - _EPOCH
        made = timestamp_pb2.Timestamp(seconds=since.days * 86400 + since.seconds, nanos=since.microseconds * 1000)
        if len(_timestamps) >= _TIMESTAMPS_KEPT:
            _timestamps.clear()
        _timestamps[value] = made
    return made


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIMESTAMPS_KEPT = 256
_timestamps: dict[datetime, timestamp_pb2.Timestamp] = {}


def from_timestamp(value: timestamp_pb2.Timestamp) -> datetime:
    """An aware UTC datetime for a Timestamp."""
    return value.ToDatetime(tzinfo=UTC)


def duration(seconds: float) -> duration_pb2.Duration:
    """A Duration of `seconds`."""
    whole = int(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=round((seconds - whole) * 1e9))


def seconds(value: duration_pb2.Duration) -> float:
    """Seconds in a Duration."""
    return value.seconds + value.nanos / 1e9


def struct_to_dict(value: struct_pb2.Struct, field: str) -> dict[str, Any]:
    """A Struct as a JSON object; INVALID_ARGUMENT naming `field` when it holds what JSON cannot (NaN, ±Infinity)."""
    if not value.fields:  # MessageToDict walks the descriptors in Python even for an empty Struct
        return {}
    try:
        return json_format.MessageToDict(value)
    except (ValueError, json_format.Error) as error:
        reason = str(error).splitlines()[0] if str(error) else "not representable as JSON"
        raise InvalidArgument(
            f"{field}: {reason}",
            field_violations=[FieldViolation(field, f"must be valid JSON (no NaN or Infinity): {reason}")],
        ) from None
