"""Registering services through the chain: every method handler is wrapped once, at start-up.

Generated `add_XServicer_to_server(servicer, server)` functions call `server.add_generic_rpc_handlers(...)` and
then `server.add_registered_method_handlers(service, method_handlers)`. `ChainedServer` stands in for the server
during registration: it wraps each method handler with the chain, so the per-call cost of the chain is one
function call rather than an interceptor hop.

The wrapped handlers of every service go into one table behind one generic handler, and none is registered as a
"registered method". grpc.aio keeps one pending request future per registered method and, for every call that
arrives, awaits `asyncio.wait` over all of them: with Baton's fifty-odd methods that cost more loop time per
call than the whole handler of a simple RPC. With the generic handler alone it waits on a single future, and the
method is found with one dictionary lookup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import grpc

from baton.server.interceptors.base import Chain, invocation_metadata

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]


class MethodTable(grpc.GenericRpcHandler):
    """Every method handler of the server, found by its full name (`/pkg.Service/Method`) in one lookup."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        """The handler of the called method, or None (grpc answers UNIMPLEMENTED).

        It also keeps the call's metadata for the chain (see `base.invocation_metadata`)."""
        invocation_metadata.set(handler_call_details.invocation_metadata)
        return self.handlers.get(handler_call_details.method)


class ChainedServer:
    """The registration surface of grpc.aio.Server, wrapping every handler with `chain`."""

    def __init__(self, server: grpc.aio.Server, chain: Chain) -> None:
        self._chain = chain
        self._pending: set[str] = set()
        self._table = MethodTable()
        server.add_generic_rpc_handlers((self._table,))

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        """Note the service; its handlers arrive again through add_registered_method_handlers."""
        for handler in handlers:
            name = getattr(handler, "service_name", None)
            if not callable(name):
                raise TypeError(f"{handler!r} does not name its service: register services with method handlers")
            self._pending.add(name())

    def add_registered_method_handlers(self, service: str, method_handlers: Mapping[str, Handler]) -> None:
        """Wrap the service's handlers with the chain and add them to the server's method table."""
        for name, handler in method_handlers.items():
            method = f"/{service}/{name}"
            if method in self._table.handlers:
                raise ValueError(f"{method} is registered twice")
            self._table.handlers[method] = self._chain.wrap(method, handler)
        self._pending.discard(service)

    def check_complete(self) -> None:
        """Fail if a service was added without its method handlers (it would bypass the chain)."""
        if self._pending:
            raise RuntimeError(f"services registered without method handlers: {sorted(self._pending)}")
