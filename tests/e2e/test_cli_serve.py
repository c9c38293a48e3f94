"""`baton serve`, `baton health`, `baton migrate` and `baton config` as separate processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

BATON = [sys.executable, "-m", "baton"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env.update(
        BATON_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'baton.db'}",
        BATON_PORT=str(free_port()),
        BATON_METRICS_PORT=str(free_port()),
        BATON_DRAIN_SECONDS="0.2",
        BATON_GRACE_SECONDS="2",
    )
    env.update(extra)
    return env


def wait_serving(port: int, deadline: float = 20.0) -> None:
    end = time.monotonic() + deadline
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < end:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    raise AssertionError(f"server on port {port} did not become SERVING within {deadline}s")


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    env = env_for(tmp_path)
    proc = subprocess.Popen([*BATON, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_serving(int(env["BATON_PORT"]))
        yield proc, env
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_bad_port_exits_2_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [*BATON, "serve"], env=env_for(tmp_path, BATON_PORT="abc"), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "BATON_PORT: 'abc' is not an integer between 1 and 65535"
    assert "Traceback" not in result.stderr


def test_every_problem_is_listed(tmp_path: Path) -> None:
    env = env_for(tmp_path, BATON_PORT="0", BATON_LOG_FORMAT="xml", BATON_RATE_LIMIT_RPS="fast")
    result = subprocess.run([*BATON, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "BATON_PORT: '0' is not an integer between 1 and 65535",
        "BATON_RATE_LIMIT_RPS: 'fast' is not a number between 0.01 and 1000000",
        "BATON_LOG_FORMAT: 'xml' is not one of json, console",
    ]


def test_serve_migrates_and_sigterm_exits_0(serving: tuple[subprocess.Popen[str], dict[str, str]]) -> None:
    proc, env = serving
    assert Path(env["BATON_DATABASE_URL"].removeprefix("sqlite+aiosqlite:///")).exists()
    health = subprocess.run([*BATON, "health"], env=env, capture_output=True, text=True, timeout=30)
    assert health.returncode == 0, health.stderr
    assert health.stdout.strip() == "SERVING"
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    stderr = proc.stderr.read() if proc.stderr else ""
    assert '"event":"server.draining"' in stderr
    assert '"event":"storage.closed"' in stderr
    assert started_line(stderr)["event_loop"] == "uvloop"  # BATON_EVENT_LOOP=auto, and uvloop is installed


def started_line(stderr: str) -> dict[str, object]:
    lines = [json.loads(line) for line in stderr.splitlines() if '"event":"server.started"' in line]
    assert len(lines) == 1, stderr
    started: dict[str, object] = lines[0]
    return started


def serve_and_stop(env: dict[str, str]) -> dict[str, object]:
    """Start `baton serve`, wait for SERVING, SIGTERM it; its server.started log line."""
    proc = subprocess.Popen([*BATON, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_serving(int(env["BATON_PORT"]))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        return started_line(proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_on_asyncio_loop_when_asked(tmp_path: Path) -> None:
    assert serve_and_stop(env_for(tmp_path, BATON_EVENT_LOOP="asyncio"))["event_loop"] == "asyncio"


def test_without_uvloop_auto_serves_on_asyncio_and_uvloop_exits_2(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"  # a uvloop that cannot be imported, as on a platform it is not built for
    shadow.mkdir()
    (shadow / "uvloop.py").write_text("raise ImportError('uvloop is not built for this platform')\n")
    env = env_for(tmp_path, BATON_EVENT_LOOP="uvloop", PYTHONPATH=str(shadow))
    result = subprocess.run([*BATON, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "BATON_EVENT_LOOP=uvloop needs uvloop installed (it is not built for Windows); use auto or asyncio"
    )
    assert serve_and_stop(dict(env, BATON_EVENT_LOOP="auto"))["event_loop"] == "asyncio"


def test_sigterm_turns_health_not_serving_before_exit(tmp_path: Path) -> None:
    env = env_for(tmp_path, BATON_DRAIN_SECONDS="2")
    proc = subprocess.Popen([*BATON, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = int(env["BATON_PORT"])
        wait_serving(port)
        proc.send_signal(signal.SIGTERM)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            end = time.monotonic() + 2
            seen = None
            while time.monotonic() < end:
                seen = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status
                if seen == health_pb2.HealthCheckResponse.NOT_SERVING:
                    break
                time.sleep(0.05)
            assert seen == health_pb2.HealthCheckResponse.NOT_SERVING
            live = stub.Check(health_pb2.HealthCheckRequest(service="liveness"), timeout=1).status
            assert live == health_pb2.HealthCheckResponse.SERVING
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_health_against_nothing_fails(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    result = subprocess.run([*BATON, "health", "--timeout", "0.5"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 3
    assert result.stderr.startswith("baton: health check of 127.0.0.1:")
    assert "UNAVAILABLE" in result.stderr or "DEADLINE_EXCEEDED" in result.stderr


def test_health_of_unknown_service_fails(serving: tuple[subprocess.Popen[str], dict[str, str]]) -> None:
    _, env = serving
    result = subprocess.run(
        [*BATON, "health", "--service", "nope"], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 3
    assert "NOT_FOUND" in result.stderr


def test_migrate_status_up_down(tmp_path: Path) -> None:
    env = env_for(tmp_path, BATON_DATABASE_URL="sqlite+aiosqlite:///" + str(tmp_path / "m.db"))
    status = subprocess.run([*BATON, "migrate", "status"], env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert "base (empty)" in status.stdout
    up = subprocess.run([*BATON, "migrate", "up"], env=env, capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    assert "current" in up.stdout
    down = subprocess.run([*BATON, "migrate", "down", "base"], env=env, capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr
    assert "base (empty)" in down.stdout


def test_unopenable_database_is_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    url = f"sqlite+aiosqlite:///{blocker}/sub/baton.db"
    result = subprocess.run(
        [*BATON, "migrate", "up"], env=env_for(tmp_path, BATON_DATABASE_URL=url), capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert str(blocker) in result.stderr


def test_postgres_password_is_redacted(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://baton:s3cret@127.0.0.1:{free_port()}/baton"
    result = subprocess.run(
        [*BATON, "serve"], env=env_for(tmp_path, BATON_DATABASE_URL=url), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "s3cret" not in result.stderr
    assert "127.0.0.1" in result.stderr


def test_config_show_redacts_secrets(tmp_path: Path) -> None:
    secret = "k" * 40
    env = env_for(tmp_path, BATON_JWT_SECRET=secret, BATON_REDIS_URL="redis://:hunter2hunter2@127.0.0.1:6379/0")
    result = subprocess.run([*BATON, "config", "show"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout
    assert "hunter2" not in result.stdout
    assert 'jwt_secret = "**********"' in result.stdout


def test_config_file_is_read_and_env_wins(tmp_path: Path) -> None:
    file = tmp_path / "baton.toml"
    file.write_text('[server]\nport = 6001\nmax_message_bytes = 2048\n[telemetry]\nlog_format = "console"\n')
    env = env_for(tmp_path, BATON_CONFIG_FILE=str(file), BATON_PORT="6002")
    result = subprocess.run([*BATON, "config", "show", "-o", "json"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert '"port": 6002' in result.stdout
    assert '"max_message_bytes": 2048' in result.stdout
    assert '"log_format": "console"' in result.stdout


def test_admin_bootstrap_prints_a_working_key_once(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    first = subprocess.run([*BATON, "admin", "bootstrap"], env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    key = next(line.strip() for line in first.stdout.splitlines() if line.strip().startswith("bk_"))
    second = subprocess.run([*BATON, "admin", "bootstrap"], env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0
    assert "nothing to do" in second.stdout
    assert key not in second.stdout
    quiet = subprocess.run(
        [*BATON, "admin", "bootstrap", "--quiet"], env=env, capture_output=True, text=True, timeout=60
    )
    assert quiet.stdout == ""
    proc = subprocess.Popen([*BATON, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_serving(int(env["BATON_PORT"]))
        from baton.v1 import auth_pb2, auth_pb2_grpc

        with grpc.insecure_channel(f"127.0.0.1:{env['BATON_PORT']}") as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            me = stub.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=(("x-api-key", key),), timeout=5)
            assert me.user.username == "admin"
            assert "users.admin" in me.permissions
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def test_metrics_endpoint_serves_grpc_and_build_metrics(
    serving: tuple[subprocess.Popen[str], dict[str, str]],
) -> None:
    import urllib.request

    _, env = serving
    with urllib.request.urlopen(f"http://127.0.0.1:{env['BATON_METRICS_PORT']}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert "baton_build_info{" in text
    assert (
        'grpc_server_handled_total{grpc_code="OK",grpc_method="Check",grpc_service="grpc.health.v1.Health",'
        'grpc_type="unary"}' in text
    )
    # Series exist for every Baton method before any call (go-grpc-prometheus's InitializeMetrics).
    assert 'grpc_server_started_total{grpc_method="CreateTask",grpc_service="baton.v1.TaskService"' in text
