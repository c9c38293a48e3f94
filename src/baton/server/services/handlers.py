"""HandlerService: register and discover handler versions and the namespaces holding them.

The chain has already checked the caller's permission, in the request's namespace where the contract names one;
ListNamespaces narrows the namespaces to those where the caller holds `handlers.read`.
"""

from __future__ import annotations

from typing import Any

from baton.domain.handlers import parse_semver
from baton.engine.handlers import HandlerRegistry
from baton.errors import FieldViolation, InvalidArgument
from baton.server.interceptors.base import current_call
from baton.server.services.handlers_convert import definition_from_proto, handler_to_proto, namespace_to_proto
from baton.v1 import handlers_pb2, handlers_pb2_grpc

READ_PERMISSION = "handlers.read"


def _require(**fields: str) -> None:
    """INVALID_ARGUMENT naming every empty field."""
    violations = [FieldViolation(field, "must not be empty") for field, value in fields.items() if not value]
    if violations:
        names = " and ".join(v.field for v in violations)
        verb = "is" if len(violations) == 1 else "are"
        raise InvalidArgument(f"{names} {verb} required", field_violations=violations)


def _readable_namespaces() -> frozenset[str] | None:
    """Namespaces where the caller may read handlers; None means every namespace."""
    call = current_call()
    if call is None or call.principal is None:
        return frozenset()
    return call.principal.namespaces_with(READ_PERMISSION)


class HandlerService(handlers_pb2_grpc.HandlerServiceServicer):
    """Converts and delegates to the HandlerRegistry."""

    def __init__(self, registry: HandlerRegistry) -> None:
        self._registry = registry

    async def RegisterHandler(self, request: handlers_pb2.RegisterHandlerRequest, context: Any) -> handlers_pb2.Handler:
        """Register a version: validated and atomic; the same definition again returns the stored one."""
        registered = await self._registry.register(definition_from_proto(request.handler))
        return handler_to_proto(registered)

    async def GetHandler(self, request: handlers_pb2.GetHandlerRequest, context: Any) -> handlers_pb2.Handler:
        """One version, or the latest when none is given."""
        _require(namespace=request.namespace, name=request.name)
        if request.version:
            try:
                parse_semver(request.version)
            except ValueError as error:
                raise InvalidArgument(
                    "version is not a semantic version",
                    field_violations=[FieldViolation("version", f"{error}; leave it empty for the latest")],
                ) from None
        return handler_to_proto(await self._registry.get(request.namespace, request.name, request.version))

    async def ListHandlers(
        self, request: handlers_pb2.ListHandlersRequest, context: Any
    ) -> handlers_pb2.ListHandlersResponse:
        """A page of a namespace's handler versions, by name then version."""
        _require(namespace=request.namespace)
        page, token = await self._registry.list_handlers(
            request.namespace,
            page_size=request.page_size,
            page_token=request.page_token,
            name=request.name,
            latest_only=request.latest_only,
        )
        return handlers_pb2.ListHandlersResponse(handlers=[handler_to_proto(h) for h in page], next_page_token=token)

    async def ListNamespaces(
        self, request: handlers_pb2.ListNamespacesRequest, context: Any
    ) -> handlers_pb2.ListNamespacesResponse:
        """A page of the namespaces holding handlers that the caller may read, by name."""
        page, token = await self._registry.list_namespaces(
            readable=_readable_namespaces(), page_size=request.page_size, page_token=request.page_token
        )
        return handlers_pb2.ListNamespacesResponse(
            namespaces=[namespace_to_proto(n) for n in page], next_page_token=token
        )
