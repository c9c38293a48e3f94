"""Deadlines: the caller's, or the contract's default when the caller sends none."""

from __future__ import annotations

import time

from baton.server.interceptors.base import Call


class DeadlineConcern:
    """Sets call.deadline; when the caller sent none, the chain enforces the policy's default."""

    def before(self, call: Call) -> None:
        """Work out the deadline and whether the server must enforce it."""
        remaining = call.context.time_remaining()
        if remaining is None or remaining > 10**8:
            # No deadline from the caller (grpc reports a huge number): apply the contract's default.
            remaining = call.policy.default_deadline_seconds
            call.enforced_timeout = remaining
        call.deadline = time.monotonic() + remaining

    def after(self, call: Call) -> None:
        """Nothing to clean up."""
