"""`baton admin`: offline administration against the database."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from baton.cli._common import EXIT_UNAVAILABLE, config_or_exit, fail

admin_app = typer.Typer(help="Offline administration (works on the database directly).", no_args_is_help=True)


async def _bootstrap(quiet: bool) -> tuple[bool, str | None, str, str]:
    from baton.auth import AuditLog, AuthManager, TokenCodec, ensure_bootstrap_admin
    from baton.observability.logging import configure_logging
    from baton.store import open_store

    config = config_or_exit()
    configure_logging("console", "error")  # this command's output is its own lines
    store = await open_store(config.storage, auto_migrate=config.storage.auto_migrate)
    audit = AuditLog(store)
    await audit.start()
    try:
        manager = AuthManager.from_config(store, config.auth, tokens=TokenCodec.from_config(config.auth), audit=audit)
        given = config.auth.bootstrap_admin_api_key
        result = await ensure_bootstrap_admin(manager, given.get_secret_value() if given else None)
    finally:
        await audit.close()
        await store.close()
    return result.created, result.generated_key, store.url, f"{config.server.host}:{config.server.port}"


@admin_app.command("bootstrap")
def bootstrap(
    quiet: Annotated[bool, typer.Option(help="Print nothing when an admin already exists.")] = False,
) -> None:
    """Create the `admin` service account and an API key when no enabled admin exists.

    The key is BATON_BOOTSTRAP_ADMIN_API_KEY when set (taken as given), else a new key printed here once.
    """
    from baton.errors import BatonError
    from baton.store import StorageError

    try:
        created, key, url, target = asyncio.run(_bootstrap(quiet))
    except StorageError as exc:
        fail(str(exc), EXIT_UNAVAILABLE)
    except BatonError as exc:
        fail(exc.message)
    if not created:
        if not quiet:
            typer.echo(f"an enabled admin exists in {url}; nothing to do")
        return
    if key is None:
        typer.echo("created service account 'admin' holding the key in BATON_BOOTSTRAP_ADMIN_API_KEY")
        return
    typer.echo("created service account 'admin' with a global admin role binding. Its API key (shown once):")
    typer.echo("")
    typer.echo(f"    {key}")
    typer.echo("")
    typer.echo(f"Use it as `x-api-key` metadata (grpcurl -plaintext -H 'x-api-key: <key>' {target} list),")
    typer.echo("or with the CLI: export BATON_API_KEY=<key>")
