"""Connection and per-call options shared by `Client` and `AsyncClient`: TLS, targets, request IDs, call info."""

from __future__ import annotations

import contextvars
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from baton.client._errors import REQUEST_ID_HEADER


class CallOptions(TypedDict, total=False):
    """Keyword arguments every client method takes.

    - `timeout`: seconds for the whole call, retries included; the contract's default deadline when omitted.
    - `request_id`: sent as `x-request-id` (on every attempt); a UUID is made when omitted.
    - `metadata`: extra call metadata.
    """

    timeout: float
    request_id: str
    metadata: Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """TLS settings: a CA bundle to trust (system roots when None), a client certificate for mTLS, and the
    name to expect in the server's certificate when it differs from the target's host."""

    ca_cert_file: str | Path | None = None
    client_cert_file: str | Path | None = None
    client_key_file: str | Path | None = None
    server_name: str | None = None

    def read(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """(CA, private key, certificate chain) as bytes, for grpc.ssl_channel_credentials."""

        def load(path: str | Path | None) -> bytes | None:
            return Path(path).read_bytes() if path is not None else None

        return load(self.ca_cert_file), load(self.client_key_file), load(self.client_cert_file)

    def ssl_context(self) -> ssl.SSLContext:
        """An ssl.SSLContext speaking HTTP/2, for grpclib."""
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_cert_file) if self.ca_cert_file else None
        )
        if self.client_cert_file is not None:
            key = str(self.client_key_file) if self.client_key_file is not None else None
            context.load_cert_chain(str(self.client_cert_file), key)
        context.set_alpn_protocols(["h2"])
        return context


@dataclass(slots=True)
class CallInfo:
    """What happened on the last call made in the current thread (Client) or task (AsyncClient)."""

    method: str
    #: The `x-request-id` sent.
    request_id: str
    #: The request ID the server answered with (its echo in the response metadata, or its RequestInfo detail).
    server_request_id: str = ""
    #: Attempts made, retries included.
    attempts: int = 0
    initial_metadata: list[tuple[str, str]] = field(default_factory=list)


LAST_CALL: contextvars.ContextVar[CallInfo | None] = contextvars.ContextVar("baton_client_last_call", default=None)


def new_request_id() -> str:
    """A fresh request ID."""
    return str(uuid.uuid4())


def parse_target(target: str) -> tuple[str, int]:
    """(host, port) of "host:port", "[v6]:port" or "host" (port 50051)."""
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else 50051
    host, sep, port = target.rpartition(":")
    if not sep:
        return target, 50051
    return host, int(port)


def build_metadata(
    request_id: str, credentials: list[tuple[str, str]], extra: Sequence[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    """Call metadata: the request ID, the credentials and the caller's extra pairs."""
    return [(REQUEST_ID_HEADER, request_id), *credentials, *extra]


def text_metadata(pairs: Sequence[tuple[str, str | bytes]] | None) -> list[tuple[str, str]]:
    """The text pairs of some metadata (binary `-bin` values dropped)."""
    return [(key, value) for key, value in pairs or () if isinstance(value, str)]


def echoed_request_id(pairs: Sequence[tuple[str, str]]) -> str:
    """The `x-request-id` value among response metadata, or ""."""
    return next((value for key, value in pairs if key == REQUEST_ID_HEADER), "")
