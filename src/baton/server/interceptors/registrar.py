"""Registering services through the chain: every method handler is wrapped once, at start-up.

Generated `add_XServicer_to_server(servicer, server)` functions call `server.add_generic_rpc_handlers(...)` and
then `server.add_registered_method_handlers(service, method_handlers)`. `ChainedServer` stands in for the server
during registration: it wraps each method handler with the chain and registers the wrapped ones on the real
server, so the per-call cost of the chain is one function call rather than an interceptor hop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import grpc

from baton.server.interceptors.base import Chain

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]


class ChainedServer:
    """The registration surface of grpc.aio.Server, wrapping every handler with `chain`."""

    def __init__(self, server: grpc.aio.Server, chain: Chain) -> None:
        self._server = server
        self._chain = chain
        self._pending: set[str] = set()

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        """Note the service; its handlers arrive again through add_registered_method_handlers."""
        for handler in handlers:
            name = getattr(handler, "service_name", None)
            if not callable(name):
                raise TypeError(f"{handler!r} does not name its service: register services with method handlers")
            self._pending.add(name())

    def add_registered_method_handlers(self, service: str, method_handlers: Mapping[str, Handler]) -> None:
        """Wrap the service's handlers with the chain and register them on the real server."""
        wrapped = {name: self._chain.wrap(f"/{service}/{name}", handler) for name, handler in method_handlers.items()}
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, wrapped),))
        self._server.add_registered_method_handlers(service, wrapped)
        self._pending.discard(service)

    def check_complete(self) -> None:
        """Fail if a service was added without its method handlers (it would bypass the chain)."""
        if self._pending:
            raise RuntimeError(f"services registered without method handlers: {sorted(self._pending)}")
