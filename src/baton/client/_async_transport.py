"""How `AsyncClient` makes one call on grpclib: metadata, deadline, retries, credentials and typed errors.

betterproto2's grpclib stubs take `timeout` and `metadata` per call. grpclib decodes the status-details trailer
itself (its ProtoStatusDetailsCodec, into google.rpc messages on GRPCError.details); the response's initial
metadata (the echoed request ID) is read through grpclib's RecvInitialMetadata event. grpclib has no
interceptors, so there are no client metrics here; the caller's trace context is still propagated.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import grpclib.client
import grpclib.events
import grpclib.exceptions
from opentelemetry import propagate

from baton.client._auth import Credentials, Session
from baton.client._errors import (
    BatonError,
    DeadlineExceededError,
    UnauthenticatedError,
    UnavailableError,
    UnknownError,
    error_from_status,
    status_code,
)
from baton.client._methods import MethodSpec, spec
from baton.client._options import (
    LAST_CALL,
    CallInfo,
    CallOptions,
    build_metadata,
    echoed_request_id,
    new_request_id,
    text_metadata,
)
from baton.client._retry import RetryPolicy, async_retrying
from baton_betterproto.baton.v1 import AuthServiceAsyncStub, LoginRequest, RefreshTokenRequest

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")

_LOGIN = spec("AuthService", "Login")
_REFRESH = spec("AuthService", "RefreshToken")
_CURRENT: contextvars.ContextVar[CallInfo | None] = contextvars.ContextVar("baton_async_current", default=None)


def error_from_exception(error: BaseException, request_id: str) -> BatonError | None:
    """The typed error for what grpclib (or the socket under it) raised; None for anything else."""
    if isinstance(error, grpclib.exceptions.GRPCError):
        details = [d for d in error.details or () if hasattr(d, "DESCRIPTOR")]
        return error_from_status(status_code(error.status.value), error.message or "", details, request_id=request_id)
    if isinstance(error, asyncio.TimeoutError):
        return DeadlineExceededError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded", request_id=request_id)
    if isinstance(error, grpclib.exceptions.StreamTerminatedError | ConnectionError | OSError):
        return UnavailableError(grpc.StatusCode.UNAVAILABLE, f"connection failed: {error}", request_id=request_id)
    if isinstance(error, grpclib.exceptions.ProtocolError):
        return UnknownError(grpc.StatusCode.UNKNOWN, f"protocol error: {error}", request_id=request_id)
    return None


async def _on_initial_metadata(event: grpclib.events.RecvInitialMetadata) -> None:
    info = _CURRENT.get()
    if info is not None:
        info.initial_metadata = text_metadata(list(event.metadata.items()))
        info.server_request_id = echoed_request_id(info.initial_metadata)


class AsyncTransport:
    """Makes calls for the async service groups; shared by every group of one AsyncClient."""

    def __init__(
        self, channel: grpclib.client.Channel, credentials: Credentials | None, retry_policy: RetryPolicy
    ) -> None:
        self.channel = channel
        self.credentials = credentials
        self.retry_policy = retry_policy
        self._auth_stub = AuthServiceAsyncStub(channel)
        self._lock = asyncio.Lock()
        grpclib.events.listen(channel, grpclib.events.RecvInitialMetadata, _on_initial_metadata)

    async def renew(self, session: Session) -> None:
        """Refresh the session's tokens (RefreshToken), or log in again when the refresh token is refused."""
        if session.refresh_token:
            try:
                request = RefreshTokenRequest(refresh_token=session.refresh_token)
                session.accept(await self.unary(_REFRESH, self._auth_stub.refresh_token, request, {}))
                return
            except UnauthenticatedError:
                pass
        login = LoginRequest(username=session.username, password=session.password)
        session.accept(await self.unary(_LOGIN, self._auth_stub.login, login, {}))

    async def _credential_metadata(self, method: MethodSpec) -> list[tuple[str, str]]:
        credentials = self.credentials
        if method.public or credentials is None:
            return []
        if isinstance(credentials, Session):
            if credentials.due():
                async with self._lock:
                    if credentials.due():
                        await self.renew(credentials)
            return credentials.metadata()
        return credentials.metadata()

    async def _attempt(
        self,
        method: MethodSpec,
        info: CallInfo,
        deadline: float,
        options: CallOptions,
        start: Callable[[float, list[tuple[str, str]]], Awaitable[ResponseT]],
    ) -> ResponseT:
        """One attempt, renewing a session once when the server answers UNAUTHENTICATED."""
        info.attempts += 1
        for renewed in (False, True):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceededError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    "deadline passed before the call was sent",
                    request_id=info.request_id,
                )
            credentials = await self._credential_metadata(method)
            metadata = build_metadata(info.request_id, credentials, options.get("metadata", ()))
            carrier: dict[str, str] = {}
            propagate.inject(carrier)  # W3C trace context of the caller's current span, if any
            metadata.extend(carrier.items())
            token = _CURRENT.set(info)
            try:
                return await start(remaining, metadata)
            except Exception as raised:
                error = error_from_exception(raised, info.request_id)
                if error is None:
                    raise
                info.server_request_id = error.request_id
                session = self.credentials
                if (
                    isinstance(error, UnauthenticatedError)
                    and isinstance(session, Session)
                    and credentials
                    and not renewed
                ):
                    session.reject(dict(credentials)["authorization"].removeprefix("Bearer "))
                    continue
                raise error from raised
            finally:
                _CURRENT.reset(token)
        raise AssertionError("unreachable")

    def _start(self, method: MethodSpec, options: CallOptions) -> tuple[CallInfo, float]:
        info = CallInfo(method.full_method, options.get("request_id") or new_request_id())
        return info, time.monotonic() + options.get("timeout", method.default_timeout)

    async def unary(
        self,
        method: MethodSpec,
        call: Callable[..., Awaitable[ResponseT]],
        request: RequestT,
        options: CallOptions,
    ) -> ResponseT:
        """Call a unary method with retries (when the contract allows) and typed errors."""
        info, deadline = self._start(method, options)

        def start(timeout: float, metadata: list[tuple[str, str]]) -> Awaitable[ResponseT]:
            return call(request, timeout=timeout, metadata=metadata)

        controller = async_retrying(self.retry_policy, retryable=method.retryable(request), deadline=deadline)
        try:
            return await controller(self._attempt, method, info, deadline, options, start)
        finally:
            LAST_CALL.set(info)

    async def stream(
        self,
        method: MethodSpec,
        call: Callable[..., AsyncIterator[ResponseT]],
        request: RequestT,
        options: CallOptions,
    ) -> AsyncGenerator[ResponseT, None]:
        """Call a server-streaming method; opening it (up to the first message) is retried like a unary call.

        `aclose()` on the iterator (or leaving `contextlib.aclosing(...)`) cancels the call.
        """
        info, deadline = self._start(method, options)
        end: Any = object()

        async def start(time_left: float, metadata: list[tuple[str, str]]) -> tuple[AsyncIterator[ResponseT], Any]:
            iterator = call(request, timeout=time_left, metadata=metadata)
            return iterator, await anext(iterator, end)

        controller = async_retrying(self.retry_policy, retryable=method.retryable(request), deadline=deadline)
        iterator: AsyncIterator[ResponseT]
        item: Any
        try:
            iterator, item = await controller(self._attempt, method, info, deadline, options, start)
        finally:
            LAST_CALL.set(info)
        try:
            while item is not end:
                yield item
                try:
                    item = await anext(iterator, end)
                except Exception as raised:
                    error = error_from_exception(raised, info.request_id)
                    if error is None:
                        raise
                    raise error from raised
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
