"""The one place that wraps gRPC method handlers; every concern is a pair of plain hooks.

grpc.aio interceptors see only the method name and metadata, and cost a coroutine hop per call before the
handler even starts. Instead `Chain.wrap` wraps the RpcMethodHandler of each method once, when services are
registered (see registrar.py), for all four call kinds. Per call it creates a `Call`, runs each concern's
`before` in chain order, runs the servicer (under the deadline the `deadline` concern set), maps any exception to
a status through the error mapper, and runs each concern's `after` in reverse order so metrics and the access
log see the final code.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from baton.auth.principal import Principal
from baton.observability.context import CURRENT_CALL
from baton.server.interceptors.decoding import check_decoded, tolerant
from baton.server.policy import CallKind, Idempotency, MethodPolicy

if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]

_current_call: contextvars.ContextVar[Call | None] = CURRENT_CALL

#: The invocation metadata grpc.aio already built for the method lookup (`HandlerCallDetails`), kept by
#: `MethodTable.service` for the call's `Call`. grpc.aio looks the method up and runs its handler in the same
#: task (`_handle_rpc`), one task per RPC, so the value set there is this RPC's and no other task sees it.
#: Building the metadata tuple again with `context.invocation_metadata()` costs about a tenth of a bare call.
invocation_metadata: contextvars.ContextVar[Sequence[tuple[str, str | bytes]] | None] = contextvars.ContextVar(
    "baton_invocation_metadata", default=None
)


def current_call() -> Call | None:
    """The Call being served in this task, for servicers (principal, request ID, time left)."""
    return _current_call.get()


class Call:
    """Per-RPC state shared by the concerns and the servicer."""

    __slots__ = (
        "admitted",
        "code",
        "context",
        "deadline",
        "details",
        "enforced_timeout",
        "error",
        "messages_received",
        "messages_sent",
        "metadata",
        "peer",
        "policy",
        "principal",
        "request",
        "request_id",
        "started",
        "trailing_metadata",
    )

    def __init__(self, policy: MethodPolicy, context: Context, request: Any) -> None:
        self.policy = policy
        self.context = context
        self.request = request
        given: Any = invocation_metadata.get()
        if given is None:  # a handler called other than through MethodTable (tests, another server)
            given = context.invocation_metadata() or ()
        self.metadata: dict[str, str] = {key: value for key, value in given if isinstance(value, str)}
        self.peer = ""
        self.started = time.perf_counter()
        self.request_id = ""
        self.principal: Principal | None = None
        self.code = grpc.StatusCode.OK
        self.details = ""
        self.error: BaseException | None = None
        self.deadline: float | None = None
        self.enforced_timeout: float | None = None
        self.messages_received = 0
        self.messages_sent = 0
        self.trailing_metadata: list[tuple[str, str]] = []
        self.admitted = False  # counted in by the concurrency limit

    def time_remaining(self) -> float | None:
        """Seconds left before the call's deadline (the caller's, or the contract's default)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def elapsed(self) -> float:
        """Seconds since the call reached the chain."""
        return time.perf_counter() - self.started


class Concern(Protocol):
    """One cross-cutting concern: `before` may raise a BatonError; `after` must not raise.

    `before` is a plain function that returns None, or an awaitable when it has to wait (sending metadata, a
    cache miss, Redis): most calls then cost no coroutine at all.
    """

    def before(self, call: Call) -> Awaitable[None] | None:
        """Run before the servicer, in chain order."""

    def after(self, call: Call) -> None:
        """Run after the servicer (or the failure), in reverse chain order."""


class ErrorMapper(Protocol):
    """Turns an exception into the call's final status and aborts the RPC with it."""

    async def abort(self, call: Call, error: BaseException) -> None:
        """Set call.code/details and abort the RPC (raises grpc.aio.AbortError)."""

    def record(self, call: Call, error: BaseException) -> None:
        """Set call.code/details for an exception that already ended the RPC."""


Behavior = Callable[..., Any]


class Chain:
    """Runs `concerns` around every method in `policies` and `exempt_concerns` around exempt ones (health,
    reflection). A method missing from the table is refused by default (it needs a permission nobody holds)."""

    def __init__(
        self,
        policies: dict[str, MethodPolicy],
        concerns: Sequence[Concern],
        exempt_concerns: Sequence[Concern],
        errors: ErrorMapper,
    ) -> None:
        self._policies = policies
        self._chains = {False: _Chain(concerns), True: _Chain(exempt_concerns)}
        self._errors = errors

    def wrap(self, method: str, handler: Handler) -> Handler:
        """The handler of `method` (`/pkg.Service/Method`) with the chain around it."""
        return self._wrap(handler, self._policies.get(method) or _no_policy(method, handler))

    async def _fail(self, call: Call, error: BaseException) -> None:
        if isinstance(error, grpc.aio.AbortError):
            # The servicer aborted with its own status, or the error mapper already did.
            if call.code == grpc.StatusCode.OK:
                code = call.context.code()
                call.code = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
            raise error
        if isinstance(error, asyncio.CancelledError):
            remaining = call.context.time_remaining()
            expired = remaining is not None and remaining <= 0
            call.code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
            raise error
        await self._errors.abort(call, error)

    def _wrap(self, handler: Handler, policy: MethodPolicy) -> Handler:
        chain = self._chains[policy.exempt]
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary_unary(handler.unary_unary, policy, chain),
                request_deserializer=tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._unary_stream(handler.unary_stream, policy, chain),
                request_deserializer=tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._stream_unary(handler.stream_unary, policy, chain),
                request_deserializer=tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        assert handler.stream_stream is not None
        return grpc.stream_stream_rpc_method_handler(
            self._stream_stream(handler.stream_stream, policy, chain),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _unary_unary(self, behavior: Behavior, policy: MethodPolicy, chain: _Chain) -> Behavior:
        async def run(request: Any, context: Context) -> Any:
            call = Call(policy, context, request)
            call.messages_received = 1
            try:
                await chain.enter(call)
                check_decoded(request)
                if call.enforced_timeout is None:
                    response = await behavior(request, context)
                else:
                    async with asyncio.timeout(call.enforced_timeout):
                        response = await behavior(request, context)
                call.messages_sent = 1
                return response
            except BaseException as error:  # noqa: BLE001 - every outcome is mapped to a status
                await self._fail(call, error)
            finally:
                chain.leave(call)

        return run

    def _unary_stream(self, behavior: Behavior, policy: MethodPolicy, chain: _Chain) -> Behavior:
        async def run(request: Any, context: Context) -> AsyncIterator[Any]:
            call = Call(policy, context, request)
            call.messages_received = 1
            try:
                await chain.enter(call)
                check_decoded(request)
                async with asyncio.timeout(call.enforced_timeout):
                    async for response in _responses(behavior(request, context)):
                        call.messages_sent += 1
                        yield response
            except BaseException as error:  # noqa: BLE001 - every outcome is mapped to a status
                await self._fail(call, error)
            finally:
                chain.leave(call)

        return run

    def _stream_unary(self, behavior: Behavior, policy: MethodPolicy, chain: _Chain) -> Behavior:
        async def run(requests: AsyncIterator[Any], context: Context) -> Any:
            call = Call(policy, context, None)
            try:
                await chain.enter(call)
                async with asyncio.timeout(call.enforced_timeout):
                    response = await behavior(_counted(requests, call), context)
                call.messages_sent = 1
                return response
            except BaseException as error:  # noqa: BLE001 - every outcome is mapped to a status
                await self._fail(call, error)
            finally:
                chain.leave(call)

        return run

    def _stream_stream(self, behavior: Behavior, policy: MethodPolicy, chain: _Chain) -> Behavior:
        async def run(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
            call = Call(policy, context, None)
            try:
                await chain.enter(call)
                async with asyncio.timeout(call.enforced_timeout):
                    async for response in _responses(behavior(_counted(requests, call), context)):
                        call.messages_sent += 1
                        yield response
            except BaseException as error:  # noqa: BLE001 - every outcome is mapped to a status
                await self._fail(call, error)
            finally:
                chain.leave(call)

        return run


def _no_policy(method: str, handler: Handler) -> MethodPolicy:
    """Default deny: a served method missing from the policy table needs a permission nobody holds."""
    service, _, name = method.strip("/").partition("/")
    kind = (
        CallKind.UNARY
        if handler.unary_unary is not None
        else CallKind.SERVER_STREAM
        if handler.unary_stream is not None
        else CallKind.CLIENT_STREAM
        if handler.stream_unary is not None
        else CallKind.BIDI_STREAM
    )
    return MethodPolicy(
        full_method=method,
        service=service,
        method=name,
        kind=kind,
        permission="baton.no-policy",
        public=False,
        rate_cost=1,
        default_deadline_seconds=30.0,
        idempotency=Idempotency.UNKNOWN,
        namespace_field="",
    )


class _Chain:
    """An ordered list of concerns: `before` hooks in order, `after` hooks in reverse."""

    __slots__ = ("_concerns", "_reversed")

    def __init__(self, concerns: Sequence[Concern]) -> None:
        self._concerns = tuple(concerns)
        self._reversed = tuple(reversed(self._concerns))

    async def enter(self, call: Call) -> None:
        _current_call.set(call)
        for concern in self._concerns:
            pending = concern.before(call)
            if pending is not None:
                await pending

    def leave(self, call: Call) -> None:
        for concern in self._reversed:
            concern.after(call)


async def _responses(result: Any) -> AsyncIterator[Any]:
    """Responses of a streaming servicer, whether it yields or writes through context.write."""
    if inspect.isasyncgen(result):
        async for response in result:
            yield response
    elif inspect.isawaitable(result):
        await result
    else:
        for response in result:
            yield response


async def _counted(requests: AsyncIterator[Any], call: Call) -> AsyncIterator[Any]:
    async for request in requests:
        call.messages_received += 1
        check_decoded(request)
        yield request
