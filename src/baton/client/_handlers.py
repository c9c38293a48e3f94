"""HandlerService for `Client.handlers` and `AsyncClient.handlers`: register and read handler definitions."""

from __future__ import annotations

from typing import Unpack

from baton.client._async_transport import AsyncTransport
from baton.client._methods import spec
from baton.client._options import CallOptions
from baton.client._sync_transport import SyncTransport
from baton_betterproto.baton.v1 import (
    GetHandlerRequest,
    Handler,
    HandlerServiceAsyncStub,
    HandlerServiceStub,
    ListHandlersRequest,
    ListHandlersResponse,
    ListNamespacesRequest,
    ListNamespacesResponse,
    RegisterHandlerRequest,
)

_S = "HandlerService"
REGISTER, GET = spec(_S, "RegisterHandler"), spec(_S, "GetHandler")
LIST, NAMESPACES = spec(_S, "ListHandlers"), spec(_S, "ListNamespaces")


class Handlers:
    """HandlerService through the sync client."""

    def __init__(self, transport: SyncTransport) -> None:
        self._rpc = transport
        self._stub = HandlerServiceStub(transport.channel)

    def register(self, handler: Handler, **options: Unpack[CallOptions]) -> Handler:
        """Register a handler version (idempotent: the same definition returns the stored handler)."""
        request = RegisterHandlerRequest(handler=handler)
        return self._rpc.unary(REGISTER, self._stub.register_handler, request, options)

    def get(self, namespace: str, name: str, version: str = "", **options: Unpack[CallOptions]) -> Handler:
        """A handler version; the latest by SemVer when `version` is empty."""
        request = GetHandlerRequest(namespace=namespace, name=name, version=version)
        return self._rpc.unary(GET, self._stub.get_handler, request, options)

    def list(
        self,
        namespace: str,
        *,
        name: str = "",
        latest_only: bool = False,
        page_size: int = 0,
        page_token: str = "",
        **options: Unpack[CallOptions],
    ) -> ListHandlersResponse:
        """One page of a namespace's handlers."""
        request = ListHandlersRequest(
            namespace=namespace, name=name, latest_only=latest_only, page_size=page_size, page_token=page_token
        )
        return self._rpc.unary(LIST, self._stub.list_handlers, request, options)

    def list_namespaces(
        self, *, page_size: int = 0, page_token: str = "", **options: Unpack[CallOptions]
    ) -> ListNamespacesResponse:
        """One page of the namespaces the caller may read."""
        request = ListNamespacesRequest(page_size=page_size, page_token=page_token)
        return self._rpc.unary(NAMESPACES, self._stub.list_namespaces, request, options)


class AsyncHandlers:
    """HandlerService through the async client."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._rpc = transport
        self._stub = HandlerServiceAsyncStub(transport.channel)

    async def register(self, handler: Handler, **options: Unpack[CallOptions]) -> Handler:
        """Register a handler version (idempotent: the same definition returns the stored handler)."""
        request = RegisterHandlerRequest(handler=handler)
        return await self._rpc.unary(REGISTER, self._stub.register_handler, request, options)

    async def get(self, namespace: str, name: str, version: str = "", **options: Unpack[CallOptions]) -> Handler:
        """A handler version; the latest by SemVer when `version` is empty."""
        request = GetHandlerRequest(namespace=namespace, name=name, version=version)
        return await self._rpc.unary(GET, self._stub.get_handler, request, options)

    async def list(
        self,
        namespace: str,
        *,
        name: str = "",
        latest_only: bool = False,
        page_size: int = 0,
        page_token: str = "",
        **options: Unpack[CallOptions],
    ) -> ListHandlersResponse:
        """One page of a namespace's handlers."""
        request = ListHandlersRequest(
            namespace=namespace, name=name, latest_only=latest_only, page_size=page_size, page_token=page_token
        )
        return await self._rpc.unary(LIST, self._stub.list_handlers, request, options)

    async def list_namespaces(
        self, *, page_size: int = 0, page_token: str = "", **options: Unpack[CallOptions]
    ) -> ListNamespacesResponse:
        """One page of the namespaces the caller may read."""
        request = ListNamespacesRequest(page_size=page_size, page_token=page_token)
        return await self._rpc.unary(NAMESPACES, self._stub.list_namespaces, request, options)
