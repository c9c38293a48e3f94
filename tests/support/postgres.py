"""A throwaway PostgreSQL cluster from the local binaries, for the test fixtures and the benchmarks.

initdb and postgres refuse to run as root, so under root (as in CI) the cluster lives in a directory owned by the
`postgres` system user and every server command runs through `runuser -u postgres --`. It listens on a free port of
127.0.0.1 only, with its unix socket in that directory, and password (SCRAM) authentication over TCP.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

POSTGRES_SYSTEM_USER = "postgres"
POSTGRES_PASSWORD = "baton-test-pw"  # a throwaway cluster on loopback


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL server: where it listens and how to log in as its superuser."""

    host: str
    port: int
    user: str
    password: str

    def url(self, database: str) -> str:
        """SQLAlchemy asyncpg URL of one database on this server."""
        return f"postgresql+asyncpg://{self.user}:{self.password}@{self.host}:{self.port}/{database}"


def postgres_bindir() -> Path | None:
    """The directory holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if found.returncode == 0:
            candidates.append(Path(found.stdout.strip()))

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True))
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Cluster:
    """One throwaway cluster in a temporary directory, run as `postgres` when we are root."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.base = Path(tempfile.mkdtemp(prefix="baton-pg-"))  # under /tmp: reachable by the postgres user
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.prefix: list[str] = []
        self.started = False
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam(POSTGRES_SYSTEM_USER)
            except KeyError:
                raise RuntimeError(
                    f"running as root, PostgreSQL needs the `{POSTGRES_SYSTEM_USER}` system user to run the "
                    "test server (initdb refuses root); create it (scripts/test does) or run as another user"
                ) from None
            os.chown(self.base, account.pw_uid, account.pw_gid)
            self.prefix = ["runuser", "-u", POSTGRES_SYSTEM_USER, "--"]

    def run(self, tool: str, *args: str) -> None:
        command = [*self.prefix, str(self.bindir / tool), *args]
        done = subprocess.run(command, cwd=self.base, capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}{done.stdout}{log}")

    def init(self) -> None:
        password_file = self.base / "password"
        password_file.write_text(POSTGRES_PASSWORD + "\n")
        if self.prefix:
            shutil.chown(password_file, POSTGRES_SYSTEM_USER)
        self.run(
            "initdb",
            *("-D", str(self.data), "-U", POSTGRES_SYSTEM_USER, f"--pwfile={password_file}"),
            *("--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"),
        )
        password_file.unlink()

    def start(self, port: int) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={self.base} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")
        self.started = True

    def stop(self) -> None:
        try:
            if self.started:
                self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def create_database(self, port: int, name: str) -> None:
        """Create an empty database (over the unix socket, as the superuser)."""
        self.run("createdb", "-h", str(self.base), "-p", str(port), "-U", POSTGRES_SYSTEM_USER, name)


def start_cluster() -> tuple[Cluster, PostgresServer]:
    """Initialise and start a cluster on a free port (retrying when another process takes the port first)."""
    bindir = postgres_bindir()
    if bindir is None:
        raise RuntimeError(
            "PostgreSQL server binaries (initdb, pg_ctl) not found via `pg_config --bindir` or in "
            "/usr/lib/postgresql/*/bin: install the `postgresql` package (scripts/test does)"
        )
    cluster = Cluster(bindir)
    try:
        cluster.init()
        for attempt in range(3):
            port = free_port()
            try:
                cluster.start(port)
                break
            except RuntimeError:
                if attempt == 2:
                    raise
    except BaseException:
        cluster.stop()
        raise
    return cluster, PostgresServer("127.0.0.1", port, POSTGRES_SYSTEM_USER, POSTGRES_PASSWORD)
