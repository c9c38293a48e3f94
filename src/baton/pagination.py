"""AIP-158 pagination: page sizes and opaque page tokens bound to the request that made them.

A token carries the position after the last item returned and a digest of the request's other fields (namespace,
filter, …). A token presented with different fields, or one that does not decode, is INVALID_ARGUMENT naming
`page_token`. Queries always apply the request's own filters, so a hand-made position can only move within results
the caller may see anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from baton.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_VERSION = 1


def page_size(value: int, field: str = "page_size") -> int:
    """The effective page size: 0 means the default, above the maximum is capped, negative is invalid."""
    if value < 0:
        raise InvalidArgument(
            f"{field} must not be negative",
            field_violations=[FieldViolation(field, f"got {value}; use 0 for the default or 1-{MAX_PAGE_SIZE}")],
        )
    if value == 0:
        return DEFAULT_PAGE_SIZE
    return min(value, MAX_PAGE_SIZE)


def request_digest(fields: Mapping[str, Any]) -> str:
    """A short digest of the request fields a token is bound to."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_token(position: Mapping[str, Any], bound_to: Mapping[str, Any]) -> str:
    """An opaque token for the page after `position`, valid only with the same `bound_to` fields."""
    payload = {"v": _VERSION, "p": position, "d": request_digest(bound_to)}
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, bound_to: Mapping[str, Any], field: str = "page_token") -> dict[str, Any] | None:
    """The position in `token` (None for an empty token); INVALID_ARGUMENT if it is garbage or was made for a
    request with other fields."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidArgument(
            "page_token is not a token this server issued",
            field_violations=[FieldViolation(field, "malformed page token")],
        ) from None
    if not isinstance(payload, dict) or payload.get("v") != _VERSION or not isinstance(payload.get("p"), dict):
        raise InvalidArgument(
            "page_token is not a token this server issued",
            field_violations=[FieldViolation(field, "malformed page token")],
        )
    if payload.get("d") != request_digest(bound_to):
        raise InvalidArgument(
            "page_token was issued for a request with other parameters",
            field_violations=[FieldViolation(field, "the other request fields must not change between pages")],
        )
    position: dict[str, Any] = payload["p"]
    return position
