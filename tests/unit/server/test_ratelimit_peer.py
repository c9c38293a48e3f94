"""Peer strings to rate-limit keys."""

from __future__ import annotations

import pytest

from baton.server.interceptors.ratelimit import peer_host


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:127.0.0.1:50812", "127.0.0.1"),
        ("ipv6:%5B::1%5D:50812", "::1"),
        ("ipv6:[2001:db8::1]:443", "2001:db8::1"),
        ("unix:/tmp/socket", "unix:/tmp/socket"),
    ],
)
def test_peer_host(peer: str, host: str) -> None:
    assert peer_host(peer) == host
