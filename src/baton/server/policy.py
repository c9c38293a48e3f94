"""The policy table: what each RPC requires, read once from the contract's method options.

Every method of every Baton service must carry `(baton.v1.policy)`; `load_policies()` raises `PolicyError`
otherwise, which stops the server from starting. Interceptors look policies up by full method name.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor, MethodDescriptor, ServiceDescriptor

from baton.v1 import (
    admin_pb2,
    auth_pb2,
    handlers_pb2,
    options_pb2,
    tasks_pb2,
    users_pb2,
    workers_pb2,
)

#: The files whose services make up Baton's API.
API_FILES: tuple[FileDescriptor, ...] = (
    handlers_pb2.DESCRIPTOR,
    tasks_pb2.DESCRIPTOR,
    workers_pb2.DESCRIPTOR,
    auth_pb2.DESCRIPTOR,
    users_pb2.DESCRIPTOR,
    admin_pb2.DESCRIPTOR,
)


class PolicyError(Exception):
    """A method's policy is missing or invalid; the server must not start."""


class Idempotency(StrEnum):
    """The standard `idempotency_level` method option."""

    UNKNOWN = "unknown"
    NO_SIDE_EFFECTS = "no_side_effects"
    IDEMPOTENT = "idempotent"


class CallKind(StrEnum):
    """The four gRPC call kinds, with go-grpc-prometheus's `grpc_type` names."""

    UNARY = "unary"
    CLIENT_STREAM = "client_stream"
    SERVER_STREAM = "server_stream"
    BIDI_STREAM = "bidi_stream"


_IDEMPOTENCY = {
    descriptor_pb2.MethodOptions.IDEMPOTENCY_UNKNOWN: Idempotency.UNKNOWN,
    descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS: Idempotency.NO_SIDE_EFFECTS,
    descriptor_pb2.MethodOptions.IDEMPOTENT: Idempotency.IDEMPOTENT,
}


@dataclass(frozen=True, slots=True)
class MethodPolicy:
    """What one RPC requires; built from its `(baton.v1.policy)` option."""

    full_method: str
    service: str
    method: str
    kind: CallKind
    permission: str
    public: bool
    rate_cost: int
    default_deadline_seconds: float
    idempotency: Idempotency
    namespace_field: str
    #: Infrastructure methods (health, reflection): no auth, rate limit or deadline, declared in the chain.
    exempt: bool = False

    @property
    def authenticated_only(self) -> bool:
        """Any authenticated caller may call it (no permission named, not public)."""
        return not self.public and not self.permission


def _kind(method: MethodDescriptor) -> CallKind:
    proto = descriptor_pb2.MethodDescriptorProto()
    method.CopyToProto(proto)
    if proto.client_streaming and proto.server_streaming:
        return CallKind.BIDI_STREAM
    if proto.client_streaming:
        return CallKind.CLIENT_STREAM
    if proto.server_streaming:
        return CallKind.SERVER_STREAM
    return CallKind.UNARY


def _check_field_path(method: MethodDescriptor, path: str) -> None:
    message = method.input_type
    for part in path.split("."):
        field = message.fields_by_name.get(part)
        if field is None:
            raise PolicyError(f"{method.full_name}: namespace_field {path!r} is not a field of the request")
        if field.message_type is not None:
            message = field.message_type


def policy_of(service: ServiceDescriptor, method: MethodDescriptor) -> MethodPolicy:
    """The validated policy of one method; PolicyError when it is missing or invalid."""
    options = method.GetOptions()
    full = f"/{service.full_name}/{method.name}"
    if not options.HasExtension(options_pb2.policy):
        raise PolicyError(f"{full} has no (baton.v1.policy) option")
    option = options.Extensions[options_pb2.policy]
    if option.rate_cost < 1:
        raise PolicyError(f"{full}: rate_cost must be at least 1")
    if option.public and option.permission:
        raise PolicyError(f"{full}: a public method names no permission")
    deadline = option.default_deadline.seconds + option.default_deadline.nanos / 1e9
    if deadline <= 0:
        raise PolicyError(f"{full}: default_deadline must be positive")
    if option.namespace_field:
        _check_field_path(method, option.namespace_field)
    return MethodPolicy(
        full_method=full,
        service=service.full_name,
        method=method.name,
        kind=_kind(method),
        permission=option.permission,
        public=option.public,
        rate_cost=option.rate_cost,
        default_deadline_seconds=deadline,
        idempotency=_IDEMPOTENCY[options.idempotency_level],
        namespace_field=option.namespace_field,
    )


def exempt_policies(files: tuple[FileDescriptor, ...]) -> dict[str, MethodPolicy]:
    """Policies for infrastructure services that carry no Baton option (health, reflection)."""
    table: dict[str, MethodPolicy] = {}
    for file in files:
        for service in file.services_by_name.values():
            for method in service.methods:
                full = f"/{service.full_name}/{method.name}"
                table[full] = MethodPolicy(
                    full_method=full,
                    service=service.full_name,
                    method=method.name,
                    kind=_kind(method),
                    permission="",
                    public=True,
                    rate_cost=1,
                    default_deadline_seconds=0.0,
                    idempotency=Idempotency.NO_SIDE_EFFECTS,
                    namespace_field="",
                    exempt=True,
                )
    return table


def service_names(files: tuple[FileDescriptor, ...] = API_FILES) -> list[str]:
    """Full names of every Baton service."""
    return [service.full_name for file in files for service in file.services_by_name.values()]


def load_policies(files: tuple[FileDescriptor, ...] = API_FILES) -> dict[str, MethodPolicy]:
    """Policy table keyed by full method name (`/baton.v1.TaskService/CreateTask`)."""
    table: dict[str, MethodPolicy] = {}
    for file in files:
        for service in file.services_by_name.values():
            for method in service.methods:
                policy = policy_of(service, method)
                table[policy.full_method] = policy
    return table
