"""Admission: at most BATON_MAX_CONCURRENT_RPCS calls in the servicers at once; the next one is refused.

Refused calls get RESOURCE_EXHAUSTED (reason SERVER_OVERLOADED) with a RetryInfo detail and a `retry-after`
trailer, like a rate-limited call, and go through the metrics and the access log. Health and reflection are not
counted, so probes still answer on a server at its limit.

grpc.aio's own `maximum_concurrent_rpcs` did this before: it sent RESOURCE_EXHAUSTED with a bare message, and
it counted each call down from a done-callback on the call's task, one more round through the event loop per
call (about 2 % of a simple call's server CPU). Here it is a counter the chain moves up in `before` and down
in `after`.
"""

from __future__ import annotations

from baton.errors import Overloaded
from baton.server.interceptors.base import Call

#: Seconds a refused caller is told to wait: in-flight calls end within a few milliseconds to seconds.
RETRY_AFTER_SECONDS = 1.0


class ConcurrencyConcern:
    """Counts the calls between `before` and `after`; refuses one beyond `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def before(self, call: Call) -> None:
        """Admit the call, or raise Overloaded."""
        if self.active >= self.limit:
            raise Overloaded(
                f"the server is serving its limit of {self.limit} calls at once; retry shortly",
                retry_after=RETRY_AFTER_SECONDS,
                metadata={"limit": str(self.limit)},
            )
        self.active += 1
        call.admitted = True

    def after(self, call: Call) -> None:
        """Count an admitted call out."""
        if call.admitted:
            self.active -= 1
