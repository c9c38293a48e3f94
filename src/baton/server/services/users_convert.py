"""Conversions between the auth layer's records and the users/auth protos."""

from __future__ import annotations

from baton.auth.credential_repository import ApiKeyRecord
from baton.auth.principal import Principal, Role, RoleBinding
from baton.auth.repository import UserRecord
from baton.errors import FieldViolation, InvalidArgument
from baton.server.convert import timestamp
from baton.v1 import common_pb2, users_pb2

_ROLE_TO_PROTO = {
    Role.ADMIN: common_pb2.ROLE_ADMIN,
    Role.OPERATOR: common_pb2.ROLE_OPERATOR,
    Role.DEVELOPER: common_pb2.ROLE_DEVELOPER,
    Role.WORKER: common_pb2.ROLE_WORKER,
    Role.VIEWER: common_pb2.ROLE_VIEWER,
}
_ROLE_FROM_PROTO: dict[int, Role] = {int(value): key for key, value in _ROLE_TO_PROTO.items()}
_KIND_TO_PROTO = {"human": users_pb2.USER_KIND_HUMAN, "service_account": users_pb2.USER_KIND_SERVICE_ACCOUNT}
_KIND_FROM_PROTO: dict[int, str] = {
    users_pb2.USER_KIND_UNSPECIFIED: "human",
    users_pb2.USER_KIND_HUMAN: "human",
    users_pb2.USER_KIND_SERVICE_ACCOUNT: "service_account",
}


def role_bindings_to_proto(bindings: tuple[RoleBinding, ...]) -> list[users_pb2.RoleBinding]:
    """RoleBinding protos."""
    return [users_pb2.RoleBinding(role=_ROLE_TO_PROTO[b.role], namespace=b.namespace or "") for b in bindings]


def role_bindings_from_proto(bindings: list[users_pb2.RoleBinding], field: str) -> list[RoleBinding]:
    """Role bindings from protos; INVALID_ARGUMENT naming `field[i].role` for an unset or unknown role."""
    result: list[RoleBinding] = []
    violations: list[FieldViolation] = []
    for index, binding in enumerate(bindings):
        role = _ROLE_FROM_PROTO.get(int(binding.role))
        if role is None:
            violations.append(
                FieldViolation(f"{field}[{index}].role", "must be one of ADMIN, OPERATOR, DEVELOPER, WORKER, VIEWER")
            )
            continue
        result.append(RoleBinding(role, binding.namespace or None))
    if violations:
        raise InvalidArgument("invalid role bindings", field_violations=violations)
    return result


def kind_from_proto(kind: int) -> str:
    """The auth layer's kind name ("human" for unset)."""
    name = _KIND_FROM_PROTO.get(kind)
    if name is None:
        raise InvalidArgument(
            "unknown user kind",
            field_violations=[FieldViolation("user.kind", "must be USER_KIND_HUMAN or USER_KIND_SERVICE_ACCOUNT")],
        )
    return name


def user_to_proto(user: UserRecord) -> users_pb2.User:
    """The User proto of a record."""
    return users_pb2.User(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        kind=_KIND_TO_PROTO.get(user.kind, users_pb2.USER_KIND_UNSPECIFIED),
        role_bindings=role_bindings_to_proto(user.role_bindings),
        disabled=user.disabled,
        create_time=timestamp(user.create_time),
        update_time=timestamp(user.update_time),
        etag=user.etag,
    )


def principal_to_proto(principal: Principal) -> users_pb2.User:
    """The identity fields of the calling principal (WhoAmI); GetUser has the full record."""
    return users_pb2.User(
        id=principal.id,
        username=principal.username,
        display_name=principal.display_name,
        kind=_KIND_TO_PROTO.get(principal.kind, users_pb2.USER_KIND_UNSPECIFIED),
        role_bindings=role_bindings_to_proto(principal.bindings),
    )


def api_key_to_proto(key: ApiKeyRecord) -> users_pb2.ApiKey:
    """The ApiKey proto of a record (never the key itself)."""
    return users_pb2.ApiKey(
        id=key.id,
        user_id=key.user_id,
        display_name=key.display_name,
        prefix=key.prefix,
        create_time=timestamp(key.create_time),
        expire_time=timestamp(key.expire_time),
        last_used_time=timestamp(key.last_used_time),
        revoke_time=timestamp(key.revoke_time),
    )
