"""How `Client` makes one call on grpcio: metadata, deadline, retries, credentials and typed errors.

betterproto2's grpcio stubs take only the request message, so the per-call timeout and metadata reach grpcio
through a channel interceptor that reads them from a context variable set around each stub call.
"""

from __future__ import annotations

import collections
import contextvars
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from baton.client._auth import Credentials, Session
from baton.client._errors import DeadlineExceededError, UnauthenticatedError, error_from_grpc
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
from baton.client._retry import RetryPolicy, retrying
from baton_betterproto.baton.v1 import AuthServiceStub, LoginRequest, RefreshTokenRequest

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")

_LOGIN = spec("AuthService", "Login")
_REFRESH = spec("AuthService", "RefreshToken")
_END: Any = object()


@dataclass(slots=True)
class _Pending:
    """Options for the stub call about to be made, and the grpcio call object once it is."""

    timeout: float
    metadata: list[tuple[str, str]]
    call: Any = None


_PENDING: contextvars.ContextVar[_Pending | None] = contextvars.ContextVar("baton_client_pending", default=None)


class _CallDetails(
    collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    """grpc.ClientCallDetails with our timeout and metadata."""


class CallOptionsInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Puts the pending call's timeout and metadata on the outgoing call (merged with what outer layers added)."""

    def _details(self, details: grpc.ClientCallDetails) -> tuple[grpc.ClientCallDetails, _Pending | None]:
        pending = _PENDING.get()
        if pending is None:
            return details, None
        metadata = [*(details.metadata or ()), *pending.metadata]
        updated = _CallDetails(
            details.method,
            pending.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )
        return updated, pending

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        details, pending = self._details(client_call_details)
        outcome = continuation(details, request)
        if pending is not None:
            pending.call = outcome
        return outcome

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        details, pending = self._details(client_call_details)
        outcome = continuation(details, request)
        if pending is not None:
            pending.call = outcome
        return outcome


class SyncTransport:
    """Makes calls for the sync service groups; shared by every group of one Client."""

    def __init__(self, channel: grpc.Channel, credentials: Credentials | None, retry_policy: RetryPolicy) -> None:
        self.channel = channel
        self.credentials = credentials
        self.retry_policy = retry_policy
        self._auth_stub = AuthServiceStub(channel)
        self._lock = threading.Lock()

    # --- credentials ------------------------------------------------------------------------------------------

    def renew(self, session: Session) -> None:
        """Refresh the session's tokens (RefreshToken), or log in again when the refresh token is refused."""
        if session.refresh_token:
            try:
                request = RefreshTokenRequest(refresh_token=session.refresh_token)
                session.accept(self.unary(_REFRESH, self._auth_stub.refresh_token, request, {}))
                return
            except UnauthenticatedError:
                pass
        login = LoginRequest(username=session.username, password=session.password)
        session.accept(self.unary(_LOGIN, self._auth_stub.login, login, {}))

    def _credential_metadata(self, method: MethodSpec) -> list[tuple[str, str]]:
        credentials = self.credentials
        if method.public or credentials is None:
            return []
        if isinstance(credentials, Session):
            with self._lock:
                if credentials.due():
                    self.renew(credentials)
                return credentials.metadata()
        return credentials.metadata()

    # --- calls ------------------------------------------------------------------------------------------------

    def _attempt(
        self,
        method: MethodSpec,
        info: CallInfo,
        deadline: float,
        options: CallOptions,
        start: Callable[[_Pending], ResponseT],
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
            credentials = self._credential_metadata(method)
            metadata = build_metadata(info.request_id, credentials, options.get("metadata", ()))
            pending = _Pending(remaining, metadata)
            token = _PENDING.set(pending)
            try:
                result = start(pending)
            except grpc.RpcError as rpc_error:
                error = error_from_grpc(rpc_error, info.request_id)
                info.server_request_id = error.request_id
                session = self.credentials
                if (
                    isinstance(error, UnauthenticatedError)
                    and isinstance(session, Session)
                    and credentials
                    and not renewed
                ):
                    with self._lock:
                        session.reject(dict(credentials)["authorization"].removeprefix("Bearer "))
                    continue
                raise error from rpc_error
            finally:
                _PENDING.reset(token)
            initial = getattr(pending.call, "initial_metadata", None)
            if callable(initial) and not isinstance(result, Iterator):
                info.initial_metadata = text_metadata(initial())
                info.server_request_id = echoed_request_id(info.initial_metadata)
            return result
        raise AssertionError("unreachable")

    def _start(self, method: MethodSpec, options: CallOptions) -> tuple[CallInfo, float]:
        info = CallInfo(method.full_method, options.get("request_id") or new_request_id())
        return info, time.monotonic() + options.get("timeout", method.default_timeout)

    def unary(
        self,
        method: MethodSpec,
        call: Callable[[RequestT], ResponseT],
        request: RequestT,
        options: CallOptions,
    ) -> ResponseT:
        """Call a unary method with retries (when the contract allows) and typed errors."""
        info, deadline = self._start(method, options)
        controller = retrying(self.retry_policy, retryable=method.retryable(request), deadline=deadline)
        try:
            response: ResponseT = controller(self._attempt, method, info, deadline, options, lambda _: call(request))
            return response
        finally:
            LAST_CALL.set(info)

    def stream(
        self,
        method: MethodSpec,
        call: Callable[[RequestT], Iterator[ResponseT]],
        request: RequestT,
        options: CallOptions,
    ) -> Generator[ResponseT, None, None]:
        """Call a server-streaming method; opening it (up to the first message) is retried like a unary call.

        Closing the iterator (or leaving a `with contextlib.closing(...)`) cancels the call.
        """
        info, deadline = self._start(method, options)

        def open_stream(pending: _Pending) -> tuple[_Pending, Iterator[ResponseT], ResponseT]:
            iterator = call(request)
            return pending, iterator, next(iterator, _END)

        controller = retrying(self.retry_policy, retryable=method.retryable(request), deadline=deadline)
        try:
            pending, iterator, first = controller(self._attempt, method, info, deadline, options, open_stream)
        finally:
            LAST_CALL.set(info)
        initial = getattr(pending.call, "initial_metadata", None)
        if callable(initial):
            info.initial_metadata = text_metadata(initial())
            info.server_request_id = echoed_request_id(info.initial_metadata)
        try:
            item = first
            while item is not _END:
                yield item
                try:
                    item = next(iterator, _END)
                except grpc.RpcError as rpc_error:
                    raise error_from_grpc(rpc_error, info.request_id) from rpc_error
        finally:
            # grpcio's call object, or the generator a wrapping interceptor made of it.
            stop = getattr(pending.call, "cancel", None) or getattr(pending.call, "close", None)
            if callable(stop):
                stop()
