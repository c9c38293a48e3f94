"""Requests that do not decode are the caller's mistake: INVALID_ARGUMENT through the chain, not grpcio's UNKNOWN.

grpcio runs a method's request deserializer before any handler code and answers a failure with UNKNOWN and the
exception's class in the message, outside the chain (no request ID, no log line, no metrics). `tolerant()` wraps the
deserializer so a failure yields an `Undecodable` marker instead; the chain runs as for any call (request ID,
authentication, metrics, the access log), then `check_decoded()` raises InvalidArgument for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from baton.errors import FieldViolation, InvalidArgument


class Undecodable:
    """A request message that failed to decode, with the decoder's reason."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """The deserializer, returning an Undecodable for bytes it cannot decode."""
    if deserializer is None:
        return None
    decode = deserializer

    def decode_or_mark(data: bytes) -> Any:
        try:
            return decode(data)
        except Exception as error:  # noqa: BLE001 - any decoding failure is the caller's bytes
            return Undecodable(str(error).splitlines()[0][:200] if str(error) else type(error).__name__)

    return decode_or_mark


def check_decoded(request: Any) -> None:
    """InvalidArgument when the request did not decode."""
    if isinstance(request, Undecodable):
        raise InvalidArgument(
            f"the request message could not be decoded: {request.reason}",
            reason="MALFORMED_REQUEST",
            field_violations=[FieldViolation("request", "not a valid serialized message of this method's type")],
        )
