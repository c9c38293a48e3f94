"""`baton serve` with some of the chain's concerns made no-ops, for `chain_instructions --without`.

Bench-only: it patches the concern classes in this process before the server builds its chain, so the server
under measurement is the real one minus the named parts, and the difference in instructions a call is what those
parts cost. Names (comma-separated in BENCH_WITHOUT):

    access     the access log (peer, line, batching)     metrics    the grpc_server_* counters and histogram
    rate       the rate limiter                          deadline   the default deadline
    authz      authorization                             echo       the request-ID echo (an ID is still made)
"""

from __future__ import annotations

import os
import sys
from typing import Any

from baton.server.interceptors import access_log, auth, deadline, metrics, ratelimit, request_id

CONCERNS: dict[str, Any] = {
    "access": access_log.AccessLogConcern,
    "metrics": metrics.MetricsConcern,
    "rate": ratelimit.RateLimitConcern,
    "deadline": deadline.DeadlineConcern,
    "authz": auth.AuthorizationConcern,
}
KNOWN = {*CONCERNS, "echo"}


def _nothing(self: Any, call: Any) -> None:
    return None


def _id_without_echo(self: Any, call: Any) -> None:
    call.request_id = (
        request_id.accept_request_id(call.metadata.get(request_id.HEADER)) or request_id.fresh_request_id()
    )


def main() -> None:
    without = {name for name in os.environ.get("BENCH_WITHOUT", "").split(",") if name}
    unknown = without - KNOWN
    if unknown:
        sys.exit(f"unknown concerns {sorted(unknown)}; known: {sorted(KNOWN)}")
    for name in without & set(CONCERNS):
        CONCERNS[name].before = _nothing
        CONCERNS[name].after = _nothing
    if "echo" in without:
        request_id.RequestIdConcern.before = _id_without_echo  # type: ignore[method-assign]
    from baton.cli.main import main as baton

    sys.argv = ["baton", "serve"]
    baton()


if __name__ == "__main__":
    main()
