"""Health checks made the way Kubernetes' native gRPC probe makes them.

The kubelet's `grpc:` probe opens a fresh plaintext connection per probe, sends no credentials, calls
grpc.health.v1.Health/Check with the probe's `service` (empty by default) under a short timeout
(timeoutSeconds, 1 s by default), and counts anything but SERVING — an error status included — as a failure.
Baton's readiness is `""` and its liveness `liveness`; health is exempt from authentication and rate limits.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2

from tests.e2e.conftest import BatonProcess, health_status

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def probe(target: str, service: str) -> str:
    """One probe's verdict as the kubelet sees it: the status name, or the error code's name."""
    try:
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(health_status(target, service, timeout=1.0)))
    except grpc.RpcError as error:
        return str(error.code().name)


def test_readiness_and_liveness_serve_without_credentials(baton: BatonProcess) -> None:
    assert probe(baton.target, "") == "SERVING"
    assert probe(baton.target, "liveness") == "SERVING"
    assert probe(baton.target, "baton.v1.TaskService") == "SERVING"
    # A probe naming a service the server does not know fails, as the kubelet would count it.
    assert probe(baton.target, "no.such.Service") == "NOT_FOUND"


def test_probes_are_not_rate_limited(start_baton: Callable[..., BatonProcess]) -> None:
    # One token per anonymous peer, refilled slowly: a Baton RPC without credentials runs out at once...
    baton = start_baton(BATON_RATE_LIMIT_RPS="0.01", BATON_RATE_LIMIT_BURST="1")
    with grpc.insecure_channel(baton.target) as channel:
        who_am_i = channel.unary_unary("/baton.v1.AuthService/WhoAmI")
        codes = []
        for _ in range(3):
            try:
                who_am_i(b"", timeout=5)
            except grpc.RpcError as error:
                codes.append(error.code())
        assert codes[0] == grpc.StatusCode.UNAUTHENTICATED
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes[1:]
    # ...while probes from the same address keep answering, every period.
    verdicts = [probe(baton.target, service) for _ in range(15) for service in ("", "liveness")]
    assert set(verdicts) == {"SERVING"}


def test_sigterm_fails_readiness_while_liveness_still_answers(start_baton: Callable[..., BatonProcess]) -> None:
    baton = start_baton(BATON_DRAIN_SECONDS="2", BATON_GRACE_SECONDS="1")
    assert probe(baton.target, "") == "SERVING"
    baton.proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()

    readiness = probe(baton.target, "")
    while readiness == "SERVING" and time.monotonic() - sent < 1.5:
        time.sleep(0.05)
        readiness = probe(baton.target, "")
    assert readiness == "NOT_SERVING", "readiness did not turn NOT_SERVING after SIGTERM"
    assert time.monotonic() - sent < 1.5, "readiness turned NOT_SERVING only at the end of the drain period"
    # During the drain the process is alive: the kubelet must not restart it. Services follow readiness.
    assert probe(baton.target, "liveness") == "SERVING"
    assert probe(baton.target, "baton.v1.TaskService") == "NOT_SERVING"
    assert probe(baton.target, "") == "NOT_SERVING"

    assert baton.proc.wait(timeout=15) == 0
    assert time.monotonic() - sent >= 2.0, "the server stopped before its drain period was over"
    log = baton.log_text()
    assert '"event":"server.draining"' in log
