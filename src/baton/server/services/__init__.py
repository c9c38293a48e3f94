"""Registration of the Baton servicers, one module per gRPC service.

A service whose behaviour is not built yet is served by its generated base class, which answers
UNIMPLEMENTED through the normal server path (interceptors, metrics and logs included).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from baton.config import Config
from baton.engine.watch import TaskWatcher
from baton.server.policy import MethodPolicy
from baton.server.runtime import Runtime
from baton.server.services.admin import AdminService
from baton.server.services.auth import AuthService
from baton.server.services.handlers import HandlerService
from baton.server.services.tasks import TaskService
from baton.server.services.users import UserService
from baton.server.services.workers import WorkerService
from baton.store import SqlStore
from baton.v1 import (
    admin_pb2_grpc,
    auth_pb2_grpc,
    handlers_pb2_grpc,
    tasks_pb2_grpc,
    users_pb2_grpc,
    workers_pb2_grpc,
)


@dataclass(frozen=True)
class ServiceContext:
    """What servicers get: the runtime's components, the policy table and the server's lifecycle."""

    runtime: Runtime
    policies: dict[str, MethodPolicy]
    shutdown: asyncio.Event
    started_at: float
    draining: Callable[[], bool]

    @property
    def config(self) -> Config:
        """The configuration."""
        return self.runtime.config

    @property
    def store(self) -> SqlStore:
        """The store."""
        return self.runtime.store


def _unimplemented(servicer: type[Any]) -> Callable[[ServiceContext], Any]:
    """A factory for a generated base servicer: every method answers UNIMPLEMENTED."""
    return lambda _context: servicer()


#: (add_XServicer_to_server, factory of the servicer) for every Baton service.
_REGISTRY: list[tuple[Callable[[Any, Any], None], Callable[[ServiceContext], Any]]] = [
    (handlers_pb2_grpc.add_HandlerServiceServicer_to_server, lambda c: HandlerService(c.runtime.handlers)),
    (
        tasks_pb2_grpc.add_TaskServiceServicer_to_server,
        lambda c: TaskService(c.runtime.tasks, TaskWatcher(c.store, c.runtime.notifier), c.runtime.repair),
    ),
    (
        workers_pb2_grpc.add_WorkerServiceServicer_to_server,
        lambda c: WorkerService(c.runtime.dispatch, c.config.engine),
    ),
    (auth_pb2_grpc.add_AuthServiceServicer_to_server, lambda c: AuthService(c.runtime.manager)),
    (users_pb2_grpc.add_UserServiceServicer_to_server, lambda c: UserService(c.runtime.manager)),
    (
        admin_pb2_grpc.add_AdminServiceServicer_to_server,
        lambda c: AdminService(c.store, c.runtime.limiter, c.runtime.audit, c.started_at, c.draining),
    ),
]


def register_services(server: Any, context: ServiceContext) -> None:
    """Add every Baton servicer to the server."""
    for add, factory in _REGISTRY:
        add(factory(context), server)
