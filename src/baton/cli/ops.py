"""Operator commands: serve, migrate, config, health."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from baton.cli._common import EXIT_FAILURE, EXIT_UNAVAILABLE, config_or_exit, fail
from baton.config import redacted

# Heavy modules (SQLAlchemy, Alembic, grpc) are imported inside the commands that need them, so that
# `baton serve` starts fast and `baton --help` is instant.

migrate_app = typer.Typer(help="Apply, undo or inspect database migrations.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)


def serve() -> None:
    """Run the gRPC server until SIGTERM or SIGINT (migrates the database first unless BATON_AUTO_MIGRATE=false)."""
    from baton.cli.serve import serve as run_server

    raise typer.Exit(run_server())


async def _migrate(action: str, revision: str) -> str:
    from baton.store import create_engine, migrate, redacted_url

    config = config_or_exit()
    engine = create_engine(config.storage)
    try:
        if action == "up":
            await migrate.upgrade(engine, revision)
        elif action == "down":
            await migrate.downgrade(engine, revision)
        status = await migrate.status(engine)
    finally:
        await engine.dispose()
    pending = ", ".join(status.pending) or "none"
    state = "newer than this Baton" if status.is_newer else ("current" if status.is_current else "behind")
    return (
        f"database: {redacted_url(config.storage.database_url.get_secret_value())}\n"
        f"revision: {status.current or 'base (empty)'} (head {status.head}; {state}; pending: {pending})"
    )


def _run_migration(action: str, revision: str) -> None:
    from baton.store import StorageError

    try:
        typer.echo(asyncio.run(_migrate(action, revision)))
    except StorageError as exc:
        fail(str(exc), EXIT_UNAVAILABLE)
    except Exception as exc:  # noqa: BLE001 - one clear line instead of a traceback
        fail(f"migration failed: {type(exc).__name__}: {exc}")


@migrate_app.command("up")
def migrate_up(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    _run_migration("up", revision)


@migrate_app.command("down")
def migrate_down(
    revision: Annotated[str, typer.Argument(help="Target revision: -1 for one step, base for none.")] = "-1",
) -> None:
    """Undo migrations down to REVISION."""
    _run_migration("down", revision)


@migrate_app.command("status")
def migrate_status() -> None:
    """Show the database's revision and the pending migrations."""
    _run_migration("status", "")


@config_app.command("show")
def config_show(
    output: Annotated[str, typer.Option("--output", "-o", help="json or text.")] = "text",
) -> None:
    """Print the effective configuration, secrets redacted."""
    config = config_or_exit()
    data = redacted(config)
    if output == "json":
        typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
        return
    if config.config_file is not None:
        typer.echo(f"# from {config.config_file} and BATON_* variables")
    for section, values in data.items():
        typer.echo(f"[{section}]")
        for key, value in values.items():
            typer.echo(f"{key} = {json.dumps(value, default=str)}")
        typer.echo("")


def health(
    target: Annotated[str | None, typer.Option(help="host:port; default from BATON_HOST/BATON_PORT.")] = None,
    service: Annotated[str, typer.Option(help='Service to check: "" (readiness), liveness, or a name.')] = "",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 3.0,
    tls: Annotated[bool, typer.Option(help="Use TLS (on by default when BATON_TLS_CERT_FILE is set).")] = False,
    ca_file: Annotated[str | None, typer.Option(help="CA bundle to verify the server with.")] = None,
) -> None:
    """Call grpc.health.v1.Health/Check; exit 0 only when the answer is SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2

    config = config_or_exit()
    if target is None:
        host = config.server.host
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - a wildcard bind is probed on loopback
        target = f"{host}:{config.server.port}"
    use_tls = tls or ca_file is not None or config.server.tls_enabled
    try:
        status = _check(target, service, timeout, use_tls, ca_file)
    except grpc.RpcError as exc:
        fail(f"health check of {target} failed: {exc.code().name}: {exc.details()}", EXIT_UNAVAILABLE)
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    typer.echo(name)
    if status != health_pb2.HealthCheckResponse.SERVING:
        raise typer.Exit(EXIT_FAILURE)


def _check(target: str, service: str, timeout: float, tls: bool, ca_file: str | None) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if tls:
        roots = open(ca_file, "rb").read() if ca_file else None  # noqa: SIM115 - tiny file, read once
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=roots))
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return int(response.status)
