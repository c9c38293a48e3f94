"""Who a caller is and what it may do: principals, roles and permissions. Pure code, no I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from baton.errors import FieldViolation


class Role(StrEnum):
    """Roles, matching baton.v1.Role without the ROLE_ prefix, in lower case."""

    ADMIN = "admin"
    OPERATOR = "operator"
    DEVELOPER = "developer"
    WORKER = "worker"
    VIEWER = "viewer"


#: Every permission the contract names, plus the ones servicers check themselves.
PERMISSIONS: frozenset[str] = frozenset(
    {
        "handlers.read",
        "handlers.write",
        "tasks.read",
        "tasks.create",
        "tasks.cancel",
        "tasks.retry",
        "tasks.resolve",
        "steps.poll",
        "users.admin",
        "status.read",
        "audit.read",
    }
)

_READ = frozenset({"handlers.read", "tasks.read"})

#: What each role grants. Namespace-scoped bindings grant the same set within one namespace; the global-only
#: permissions (users.admin, status.read, audit.read) are granted only by global bindings.
ROLE_PERMISSIONS: Mapping[Role, frozenset[str]] = {
    Role.ADMIN: PERMISSIONS,
    Role.OPERATOR: _READ
    | {"tasks.create", "tasks.cancel", "tasks.retry", "tasks.resolve", "status.read", "audit.read"},
    Role.DEVELOPER: _READ | {"handlers.write", "tasks.create", "tasks.cancel"},
    Role.WORKER: frozenset({"steps.poll", "handlers.read"}),
    Role.VIEWER: _READ,
}

GLOBAL_ONLY: frozenset[str] = frozenset({"users.admin", "status.read", "audit.read"})


@dataclass(frozen=True, slots=True)
class RoleBinding:
    """A role held globally (namespace None) or within one namespace."""

    role: Role
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller with its permissions resolved once."""

    id: str
    username: str
    kind: str
    bindings: tuple[RoleBinding, ...]
    auth_method: str = ""
    credential_id: str = ""
    global_permissions: frozenset[str] = field(default=frozenset())
    scoped_permissions: Mapping[str, frozenset[str]] = field(default_factory=dict)
    display_name: str = ""

    @classmethod
    def build(
        cls,
        *,
        id: str,
        username: str,
        kind: str,
        bindings: Iterable[RoleBinding],
        auth_method: str = "",
        credential_id: str = "",
        display_name: str = "",
    ) -> Principal:
        """Resolve the bindings into global and per-namespace permission sets."""
        bindings = tuple(bindings)
        global_permissions: set[str] = set()
        scoped: dict[str, set[str]] = {}
        for binding in bindings:
            granted = ROLE_PERMISSIONS[binding.role]
            if binding.namespace is None:
                global_permissions |= granted
            else:
                scoped.setdefault(binding.namespace, set()).update(granted - GLOBAL_ONLY)
        return cls(
            id=id,
            username=username,
            kind=kind,
            bindings=bindings,
            auth_method=auth_method,
            credential_id=credential_id,
            global_permissions=frozenset(global_permissions),
            scoped_permissions={ns: frozenset(p) for ns, p in scoped.items()},
            display_name=display_name,
        )

    @property
    def roles(self) -> frozenset[Role]:
        """Every role held, globally or in some namespace."""
        return frozenset(binding.role for binding in self.bindings)

    def can(self, permission: str, namespace: str | None = None) -> bool:
        """Whether the principal holds `permission` globally, or in `namespace` when one is given."""
        if permission in self.global_permissions:
            return True
        if namespace is None:
            return False
        return permission in self.scoped_permissions.get(namespace, frozenset())

    def can_somewhere(self, permission: str) -> bool:
        """Whether the principal holds `permission` globally or in at least one namespace."""
        return permission in self.global_permissions or any(
            permission in granted for granted in self.scoped_permissions.values()
        )

    def namespaces_with(self, permission: str) -> frozenset[str] | None:
        """Namespaces where `permission` is held; None means every namespace (a global grant)."""
        if permission in self.global_permissions:
            return None
        return frozenset(ns for ns, granted in self.scoped_permissions.items() if permission in granted)

    def permission_strings(self) -> list[str]:
        """Effective permissions as "perm" (global) and "perm@namespace" strings, sorted."""
        scoped = {
            f"{perm}@{ns}"
            for ns, granted in self.scoped_permissions.items()
            for perm in granted
            if perm not in self.global_permissions
        }
        return sorted(self.global_permissions | scoped)


_ROLE_NAMES = frozenset(role.value for role in Role)
USERNAME_PATTERN = re.compile(r"[a-z0-9._@-]{3,64}")
NAMESPACE_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,62}")


def username_violations(username: str, field: str = "user.username") -> list[FieldViolation]:
    """What is wrong with a username (empty when it is valid)."""
    if USERNAME_PATTERN.fullmatch(username):
        return []
    return [FieldViolation(field, "must be 3-64 characters of lower-case letters, digits and . _ @ -")]


def binding_violations(bindings: Sequence[RoleBinding], field: str = "user.role_bindings") -> list[FieldViolation]:
    """What is wrong with role bindings: unknown roles, namespace names that are not 1-63 characters of
    [a-z0-9-] starting with a letter. A namespace of None (or "") grants the role everywhere."""
    violations: list[FieldViolation] = []
    for index, binding in enumerate(bindings):
        if binding.role not in _ROLE_NAMES:
            violations.append(FieldViolation(f"{field}[{index}].role", f"must be one of {', '.join(Role)}"))
        namespace = binding.namespace
        if namespace and not NAMESPACE_PATTERN.fullmatch(namespace):
            violations.append(
                FieldViolation(
                    f"{field}[{index}].namespace",
                    "must be 1-63 characters of lower-case letters, digits and -, starting with a letter",
                )
            )
    return violations


def normalized_bindings(bindings: Iterable[RoleBinding]) -> tuple[RoleBinding, ...]:
    """Bindings with "" namespaces as None and duplicates removed, in their first order."""
    seen: dict[RoleBinding, None] = {}
    for binding in bindings:
        seen.setdefault(RoleBinding(Role(binding.role), binding.namespace or None), None)
    return tuple(seen)
