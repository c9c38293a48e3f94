"""A real `baton serve` process for the polyglot and operator tests, with a known admin API key.

The server runs as a subprocess on 127.0.0.1 with an ephemeral port and its own SQLite file, logging to a file in
the test's tmp_path (a pipe nobody reads could fill up and stall it). It is always killed after the test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

#: The key the server's bootstrap admin holds (BATON_BOOTSTRAP_ADMIN_API_KEY: 32+ characters, taken as given).
ADMIN_API_KEY = "e2e-admin-key-0123456789abcdefghijklmnopqrstuvwxyz"
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class BatonProcess:
    """A running `baton serve`: the process, where it listens, and its log file."""

    proc: subprocess.Popen[bytes]
    port: int
    env: dict[str, str]
    log: Path
    api_key: str = ADMIN_API_KEY

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def health_status(target: str, service: str, timeout: float = 1.0) -> int:
    """One grpc.health.v1 Check, without credentials, as Kubernetes' gRPC probe makes it."""
    with grpc.insecure_channel(target, options=[("grpc.primary_user_agent", "kube-probe/1.31")]) as channel:
        return int(
            health_pb2_grpc.HealthStub(channel)
            .Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
            .status
        )


def wait_serving(baton: BatonProcess, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if baton.proc.poll() is not None:
            raise AssertionError(f"baton serve exited with {baton.proc.returncode}:\n{baton.log_text()[-4000:]}")
        try:
            if health_status(baton.target, "") == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.1)
    raise AssertionError(
        f"baton serve on {baton.target} was not SERVING within {deadline}s:\n{baton.log_text()[-4000:]}"
    )


@pytest.fixture
def start_baton(tmp_path: Path) -> Iterator[Callable[..., BatonProcess]]:
    """Start `baton serve` with extra BATON_* variables and wait until it is SERVING; killed after the test."""
    started: list[BatonProcess] = []

    def start(**extra: str) -> BatonProcess:
        number = len(started)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
        env.update(
            BATON_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / f'baton-{number}.db'}",
            BATON_HOST="127.0.0.1",
            BATON_PORT=str(free_port()),
            BATON_METRICS_PORT="0",
            BATON_BOOTSTRAP_ADMIN_API_KEY=ADMIN_API_KEY,
            BATON_DRAIN_SECONDS="0.2",
            BATON_GRACE_SECONDS="2",
        )
        env.update(extra)
        log = tmp_path / f"baton-{number}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "baton", "serve"],
                env=env,
                cwd=tmp_path,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        baton = BatonProcess(proc=proc, port=int(env["BATON_PORT"]), env=env, log=log)
        started.append(baton)
        wait_serving(baton)
        return baton

    try:
        yield start
    finally:
        for baton in started:
            if baton.proc.poll() is None:
                baton.proc.kill()
            baton.proc.wait(timeout=10)


@pytest.fixture
def baton(start_baton: Callable[..., BatonProcess]) -> BatonProcess:
    """One `baton serve` with default settings."""
    return start_baton()
