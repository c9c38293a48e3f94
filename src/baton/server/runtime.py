"""The components a server runs with, built once from the configuration and closed in order on shutdown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from baton.auth import AuditLog, AuthManager, CachingAuthenticator, TokenCodec, ensure_bootstrap_admin
from baton.config import Config
from baton.engine.dispatch import Dispatcher
from baton.engine.handlers import HandlerRegistry
from baton.engine.metrics import QueueSampler
from baton.engine.notify import Notifier
from baton.engine.pg_notify import PgNotifyBridge, asyncpg_dsn
from baton.engine.repair import TaskRepair
from baton.engine.tasks import TaskEngine
from baton.observability.logging import flush_logs, get_logger
from baton.observability.tracing import build_tracer_provider
from baton.ratelimit import CompositeLimiter, build_limiter
from baton.server.interceptors.metrics import ServerMetrics, default_server_metrics
from baton.store import SqlStore

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = get_logger(__name__)


@dataclass
class Runtime:
    """Everything the chain and the servicers share."""

    config: Config
    store: SqlStore
    tokens: TokenCodec
    audit: AuditLog
    authenticator: CachingAuthenticator
    manager: AuthManager
    limiter: CompositeLimiter | None
    metrics: ServerMetrics
    tracer_provider: TracerProvider | None
    handlers: HandlerRegistry
    tasks: TaskEngine
    notifier: Notifier
    dispatch: Dispatcher
    repair: TaskRepair
    sampler: QueueSampler
    bridge: PgNotifyBridge | None = None

    async def close(self) -> None:
        """Flush and stop the background writers, the limiter and the tracer (the store is closed by its
        owner, after this)."""
        if self.bridge is not None:
            await self.bridge.stop()
        await self.authenticator.close()
        await self.audit.close()
        if self.limiter is not None:
            await self.limiter.close()
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        flush_logs()


async def build_runtime(config: Config, store: SqlStore, *, tracer_provider: TracerProvider | None = None) -> Runtime:
    """Build and start the components; creates the bootstrap admin when BATON_BOOTSTRAP_ADMIN_API_KEY asks.

    `tracer_provider` overrides the one the OTEL_* variables would build (tests pass an in-memory one).
    """
    tokens = TokenCodec.from_config(config.auth)
    audit = AuditLog(store)
    await audit.start()
    authenticator = CachingAuthenticator.from_config(store, config.auth, tokens)
    await authenticator.start()
    manager = AuthManager.from_config(store, config.auth, tokens=tokens, audit=audit, cache=authenticator)
    bootstrap_key = config.auth.bootstrap_admin_api_key
    if bootstrap_key is not None:
        result = await ensure_bootstrap_admin(manager, bootstrap_key.get_secret_value())
        if result.created:
            log.info("auth.bootstrap_admin_created", username=result.user.username if result.user else "admin")
    limiter = build_limiter(config.rate_limit) if config.rate_limit.rate_limit_enabled else None
    provider = tracer_provider if tracer_provider is not None else build_tracer_provider(config.telemetry)
    handlers = HandlerRegistry.from_config(store, config.engine)
    notifier = Notifier()
    bridge = None
    if store.backend == "postgresql":  # wake-ups reach the other replicas through LISTEN/NOTIFY
        bridge = PgNotifyBridge(notifier, asyncpg_dsn(config.storage.database_url.get_secret_value()))
        await bridge.start()
        notifier.publisher = bridge
    dispatch = Dispatcher(store, notifier, config.engine)
    task_engine = TaskEngine.from_config(store, handlers, config.engine, notifier, eager=dispatch)
    return Runtime(
        config=config,
        store=store,
        tokens=tokens,
        audit=audit,
        authenticator=authenticator,
        manager=manager,
        limiter=limiter,
        metrics=default_server_metrics(),
        tracer_provider=provider,
        handlers=handlers,
        tasks=task_engine,
        notifier=notifier,
        dispatch=dispatch,
        repair=TaskRepair(store, notifier, task_engine),
        sampler=QueueSampler(store),
        bridge=bridge,
    )
