"""What the contract says about each RPC, read once from the descriptors: idempotency, default deadline, public.

Nothing here is hard-coded per method: the standard `idempotency_level` option says what may be retried and the
`(baton.v1.policy)` option gives the default deadline and whether the method needs credentials.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FileDescriptor

from baton.v1 import admin_pb2, auth_pb2, handlers_pb2, options_pb2, tasks_pb2, users_pb2, workers_pb2

_API_FILES: tuple[FileDescriptor, ...] = (
    handlers_pb2.DESCRIPTOR,
    tasks_pb2.DESCRIPTOR,
    workers_pb2.DESCRIPTOR,
    auth_pb2.DESCRIPTOR,
    users_pb2.DESCRIPTOR,
    admin_pb2.DESCRIPTOR,
)
#: A request field naming an AIP-155 idempotency key: an IDEMPOTENT method is retried only when it is set.
_IDEMPOTENCY_KEY = "request_id"
#: Used when a method carries no default deadline (never for Baton's own methods).
FALLBACK_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """The client-relevant part of one RPC's contract."""

    full_method: str
    no_side_effects: bool
    idempotent: bool
    public: bool
    default_timeout: float
    #: Paths to idempotency keys: ("request_id",) at the top, ("requests", "request_id") in repeated entries.
    key_paths: tuple[tuple[str, ...], ...]

    def retryable(self, request: Any) -> bool:
        """Whether a failed attempt of this request may be sent again (UNAVAILABLE / RESOURCE_EXHAUSTED only)."""
        if self.no_side_effects:
            return True
        if not self.idempotent:
            return False
        # An IDEMPOTENT method with an idempotency key is idempotent only when the key is given.
        for path in self.key_paths:
            if len(path) == 1 and not getattr(request, path[0], ""):
                return False
            if len(path) == 2 and not all(getattr(entry, path[1], "") for entry in getattr(request, path[0], ())):
                return False
        return True


def _key_paths(message: Descriptor) -> tuple[tuple[str, ...], ...]:
    paths: list[tuple[str, ...]] = []
    for field in message.fields:
        if field.name == _IDEMPOTENCY_KEY and field.message_type is None:
            paths.append((field.name,))
        elif field.message_type and field.is_repeated and _IDEMPOTENCY_KEY in field.message_type.fields_by_name:
            paths.append((field.name, _IDEMPOTENCY_KEY))
    return tuple(paths)


def _load() -> dict[str, MethodSpec]:
    table: dict[str, MethodSpec] = {}
    for file in _API_FILES:
        for service in file.services_by_name.values():
            for method in service.methods:
                options = method.GetOptions()
                level = options.idempotency_level
                timeout, public = FALLBACK_TIMEOUT, False
                if options.HasExtension(options_pb2.policy):
                    policy = options.Extensions[options_pb2.policy]
                    deadline = policy.default_deadline.seconds + policy.default_deadline.nanos / 1e9
                    timeout = deadline if deadline > 0 else FALLBACK_TIMEOUT
                    public = policy.public
                full = f"/{service.full_name}/{method.name}"
                table[full] = MethodSpec(
                    full_method=full,
                    no_side_effects=level == descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
                    idempotent=level == descriptor_pb2.MethodOptions.IDEMPOTENT,
                    public=public,
                    default_timeout=timeout,
                    key_paths=_key_paths(method.input_type),
                )
    return table


#: Every Baton RPC by full method name (`/baton.v1.TaskService/GetTask`).
METHODS: dict[str, MethodSpec] = _load()


def spec(service: str, method: str) -> MethodSpec:
    """The spec of `baton.v1.<service>/<method>`."""
    return METHODS[f"/baton.v1.{service}/{method}"]
