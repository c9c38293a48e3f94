"""`AsyncClient`: the asyncio Baton client on grpclib (betterproto2's async stubs)."""

from __future__ import annotations

from types import TracebackType
from typing import Self

import grpclib.client
import grpclib.config

from baton.client._accounts import AsyncAdmin, AsyncAuth, AsyncUsers
from baton.client._async_transport import AsyncTransport
from baton.client._auth import Credentials, Session, credentials_from
from baton.client._handlers import AsyncHandlers
from baton.client._options import LAST_CALL, CallInfo, TLSConfig, parse_target
from baton.client._retry import DEFAULT_RETRY_POLICY, RetryPolicy
from baton.client._tasks import AsyncTasks
from baton.client._workers import AsyncWorkers


def _channel(target: str, tls: bool | TLSConfig) -> grpclib.client.Channel:
    host, port = parse_target(target)
    if tls is False:
        return grpclib.client.Channel(host, port)
    config = tls if isinstance(tls, TLSConfig) else TLSConfig()
    settings = grpclib.config.Configuration(ssl_target_name_override=config.server_name)
    return grpclib.client.Channel(host, port, ssl=config.ssl_context(), config=settings)


class AsyncClient:
    """An asyncio client for every Baton service, grouped like `Client`: `tasks`, `handlers`, `workers`,
    `auth`, `users`, `admin`; the same methods, awaited (`tasks.watch` is an async iterator).

    Use it from one event loop; close it (or `async with` it) when done.
    """

    def __init__(
        self,
        channel: grpclib.client.Channel,
        *,
        credentials: Credentials | None = None,
        retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY,
    ) -> None:
        """Wrap a grpclib channel (`connect()` builds one)."""
        self._channel = channel
        self._transport = AsyncTransport(channel, credentials, retry_policy)
        self.tasks = AsyncTasks(self._transport)
        self.handlers = AsyncHandlers(self._transport)
        self.workers = AsyncWorkers(self._transport)
        self.auth = AsyncAuth(self._transport)
        self.users = AsyncUsers(self._transport)
        self.admin = AsyncAdmin(self._transport)

    @classmethod
    async def connect(
        cls,
        target: str = "127.0.0.1:50051",
        *,
        api_key: str | None = None,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: bool | TLSConfig = False,
        retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY,
        token_refresh_margin: float = 30.0,
    ) -> AsyncClient:
        """Connect to a Baton server at `target` ("host:port"); the arguments are those of `Client.connect`
        (grpclib has no interceptors, so no `metrics` or `tracer_provider` here)."""
        credentials = credentials_from(
            api_key=api_key, token=token, username=username, password=password, refresh_margin=token_refresh_margin
        )
        client = cls(_channel(target, tls), credentials=credentials, retry_policy=retry_policy)
        if isinstance(credentials, Session):
            try:
                await client.refresh_credentials()
            except BaseException:
                client.close()
                raise
        return client

    @property
    def channel(self) -> grpclib.client.Channel:
        """The underlying grpclib channel."""
        return self._channel

    @property
    def credentials(self) -> Credentials | None:
        """The credentials calls are made with."""
        return self._transport.credentials

    @property
    def last_call(self) -> CallInfo | None:
        """What happened on the last call this task made through any client: request IDs, attempts."""
        return LAST_CALL.get()

    async def refresh_credentials(self) -> None:
        """Log in or refresh the access token now (username/password clients); a no-op for other credentials."""
        session = self._transport.credentials
        if isinstance(session, Session):
            await self._transport.renew(session)

    def close(self) -> None:
        """Close the connection."""
        self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
