"""`Client`: the sync Baton client on grpcio, with optional Prometheus client metrics and OpenTelemetry spans."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import grpc

from baton.client._accounts import Admin, Auth, Users
from baton.client._auth import Credentials, Session, credentials_from
from baton.client._handlers import Handlers
from baton.client._options import LAST_CALL, CallInfo, TLSConfig
from baton.client._retry import DEFAULT_RETRY_POLICY, RetryPolicy
from baton.client._sync_transport import CallOptionsInterceptor, SyncTransport
from baton.client._tasks import Tasks
from baton.client._workers import Workers

_prometheus_lock = threading.Lock()
_prometheus_interceptor: Any = None


def _prometheus() -> Any:
    """One PromClientInterceptor per process: it registers its metrics in the default registry when made."""
    global _prometheus_interceptor
    with _prometheus_lock:
        if _prometheus_interceptor is None:
            from py_grpc_prometheus.prometheus_client_interceptor import PromClientInterceptor

            _prometheus_interceptor = PromClientInterceptor(enable_client_handling_time_histogram=True)
        return _prometheus_interceptor


def _channel(target: str, tls: bool | TLSConfig, options: Sequence[tuple[str, Any]]) -> grpc.Channel:
    channel_options = list(options)
    if tls is False:
        return grpc.insecure_channel(target, options=channel_options)
    config = tls if isinstance(tls, TLSConfig) else TLSConfig()
    root, key, chain = config.read()
    if config.server_name:
        channel_options.append(("grpc.ssl_target_name_override", config.server_name))
    credentials = grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)
    return grpc.secure_channel(target, credentials, options=channel_options)


class Client:
    """A sync client for every Baton service, grouped by service: `tasks`, `handlers`, `workers`, `auth`,
    `users`, `admin`. Thread-safe; close it (or use it as a context manager) when done.

    Every method takes `timeout`, `request_id` and `metadata` keywords (see `CallOptions`), returns the
    betterproto2 dataclasses of `baton_betterproto.baton.v1`, and raises `BatonError` subclasses.
    """

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        credentials: Credentials | None = None,
        retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY,
        metrics: bool = False,
        tracer_provider: Any = None,
    ) -> None:
        """Wrap a grpcio channel (`connect()` makes one); see `connect()` for the other arguments."""
        # The call-options interceptor (timeout and metadata of each call) comes first among grpcio's; the
        # OpenTelemetry one is a channel wrapper of its own, outside it, whose trace-context metadata it merges.
        interceptors: list[Any] = [CallOptionsInterceptor()]
        if metrics:
            interceptors.append(_prometheus())
        self._raw_channel = channel
        wrapped = grpc.intercept_channel(channel, *interceptors)
        if tracer_provider is not None:
            from opentelemetry.instrumentation.grpc import client_interceptor, grpcext

            tracing = client_interceptor(tracer_provider=tracer_provider)  # type: ignore[no-untyped-call]
            wrapped = grpcext.intercept_channel(wrapped, tracing)  # type: ignore[no-untyped-call]
        self._channel = wrapped
        self._transport = SyncTransport(wrapped, credentials, retry_policy)
        self.tasks = Tasks(self._transport)
        self.handlers = Handlers(self._transport)
        self.workers = Workers(self._transport)
        self.auth = Auth(self._transport)
        self.users = Users(self._transport)
        self.admin = Admin(self._transport)

    @classmethod
    def connect(
        cls,
        target: str = "127.0.0.1:50051",
        *,
        api_key: str | None = None,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: bool | TLSConfig = False,
        retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY,
        metrics: bool = False,
        tracer_provider: Any = None,
        token_refresh_margin: float = 30.0,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> Client:
        """Connect to a Baton server at `target` ("host:port").

        Credentials: `api_key`, or a bearer `token`, or `username` and `password` (logged in at once, the access
        token refreshed `token_refresh_margin` seconds before it expires). `tls=True` uses the system roots;
        a TLSConfig names a CA, a client certificate (mTLS) and the expected server name. `metrics=True` records
        py-grpc-prometheus client metrics (`grpc_client_*`) in the default registry; a `tracer_provider` makes
        an OpenTelemetry client span per attempt and propagates the trace context.
        """
        credentials = credentials_from(
            api_key=api_key, token=token, username=username, password=password, refresh_margin=token_refresh_margin
        )
        channel = _channel(target, tls, channel_options)
        client = cls(
            channel,
            credentials=credentials,
            retry_policy=retry_policy,
            metrics=metrics,
            tracer_provider=tracer_provider,
        )
        if isinstance(credentials, Session):
            try:
                client.refresh_credentials()
            except BaseException:
                client.close()
                raise
        return client

    @property
    def channel(self) -> grpc.Channel:
        """The underlying grpcio channel."""
        return self._channel

    @property
    def credentials(self) -> Credentials | None:
        """The credentials calls are made with."""
        return self._transport.credentials

    @property
    def last_call(self) -> CallInfo | None:
        """What happened on the last call this thread made through any client: request IDs, attempts."""
        return LAST_CALL.get()

    def refresh_credentials(self) -> None:
        """Log in or refresh the access token now (username/password clients); a no-op for other credentials."""
        session = self._transport.credentials
        if isinstance(session, Session):
            self._transport.renew(session)

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        self._raw_channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
