"""A real `baton serve` process on 127.0.0.1 with a known admin API key, for the e2e and restart tests.

The server runs as a subprocess with an ephemeral port and the SQLite file it is given, logging to a file (a pipe
nobody reads could fill up and stall it). Callers kill it when they are done.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
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


def spawn_baton(database: Path, log: Path, *, cwd: Path, api_key: str = ADMIN_API_KEY, **extra: str) -> BatonProcess:
    """Start `python -m baton serve` on the SQLite file `database` with extra BATON_* variables, and wait until it
    is SERVING."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env.update(
        BATON_DATABASE_URL=f"sqlite+aiosqlite:///{database}",
        BATON_HOST="127.0.0.1",
        BATON_PORT=str(free_port()),
        BATON_METRICS_PORT="0",
        BATON_BOOTSTRAP_ADMIN_API_KEY=api_key,
        BATON_DRAIN_SECONDS="0.2",
        BATON_GRACE_SECONDS="2",
    )
    env.update(extra)
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "baton", "serve"],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    baton = BatonProcess(proc=proc, port=int(env["BATON_PORT"]), env=env, log=log, api_key=api_key)
    try:
        wait_serving(baton)
    except BaseException:
        proc.kill()
        proc.wait(timeout=10)
        raise
    return baton
