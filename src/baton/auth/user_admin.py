"""User administration, the user half of UserService: create, read, list, update and delete principals.

Field violations name request fields (`user.username`, `user.role_bindings[0].namespace`, `password`,
`update_mask`). Nothing may disable, delete or demote the last enabled global admin (FailedPrecondition). Any
update bumps the user's revision (its etag), which also invalidates its outstanding access tokens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from baton.auth.manager_base import (
    Actor,
    ManagerBase,
    UserChanges,
    display_name_violations,
    invalid,
    kind_password_violations,
    malformed_page_token,
    roles_text,
)
from baton.auth.principal import RoleBinding, binding_violations, normalized_bindings, username_violations
from baton.auth.repository import HUMAN, SERVICE_ACCOUNT, UserRecord
from baton.errors import FieldViolation, NotFound
from baton.pagination import decode_token, encode_token
from baton.pagination import page_size as effective_page_size
from baton.store import new_id

#: Paths UpdateUser accepts in its mask; "*" means every one but password.
UPDATABLE_PATHS = frozenset({"display_name", "role_bindings", "disabled", "password"})


class UserAdministration(ManagerBase):
    """CreateUser, GetUser, ListUsers, UpdateUser, DeleteUser."""

    async def create_user(
        self,
        username: str,
        display_name: str,
        kind: str,
        role_bindings: Sequence[RoleBinding],
        password: str = "",
        *,
        actor: Actor | None = None,
    ) -> UserRecord:
        """Create a person ("human", who needs a password of 12+ characters) or a "service_account" (who has
        none); AlreadyExists when the username is taken. Audited as user.created."""
        kind_violations = (
            []
            if kind in (HUMAN, SERVICE_ACCOUNT)
            else [FieldViolation("user.kind", "must be human or service_account")]
        )
        violations = [
            *username_violations(username),
            *display_name_violations(display_name, "user.display_name"),
            *kind_violations,
            *binding_violations(role_bindings),
            *(kind_password_violations(kind, password) if not kind_violations else []),
        ]
        if violations:
            raise invalid(violations)
        password_hash = await asyncio.to_thread(self._passwords.hash, password) if kind == HUMAN else None
        user = await self._users.create(
            user_id=new_id(),
            username=username,
            display_name=display_name,
            kind=kind,
            bindings=normalized_bindings(role_bindings),
            password_hash=password_hash,
            now=self._clock(),
        )
        self._record(
            "user.created", "ok", actor, user_id=user.id, username=username, roles=roles_text(user.role_bindings)
        )
        return user

    async def get_user(self, user_id: str) -> UserRecord:
        """A user by id; NotFound otherwise."""
        user = await self._users.get(user_id)
        if user is None:
            raise NotFound(f"user {user_id} does not exist", reason="USER_NOT_FOUND")
        return user

    async def list_users(
        self, page_size: int = 0, page_token: str = "", show_disabled: bool = False
    ) -> tuple[list[UserRecord], str]:
        """One page of users ordered by username, and the next page's token ("" on the last page)."""
        limit = effective_page_size(page_size)
        bound = {"show_disabled": show_disabled}
        position = decode_token(page_token, bound)
        after = None if position is None else position.get("u")
        if position is not None and not isinstance(after, str):
            raise malformed_page_token()
        users = await self._users.list(limit=limit + 1, after_username=after, show_disabled=show_disabled)
        if len(users) <= limit:
            return users, ""
        return users[:limit], encode_token({"u": users[limit - 1].username}, bound)

    async def update_user(
        self, user_id: str, fields: UserChanges, mask: Iterable[str], etag: str = "", *, actor: Actor | None = None
    ) -> UserRecord:
        """Apply the fields named in `mask` (display_name, role_bindings, disabled, password; "*" is all but
        password). InvalidArgument on `update_mask` for other paths; Aborted on an etag mismatch;
        FailedPrecondition when no enabled admin would be left. Disabling or a new password also revokes
        the user's refresh tokens. Audited as user.updated."""
        paths = set(mask)
        if "*" in paths:
            paths = (paths - {"*"}) | (UPDATABLE_PATHS - {"password"})
        unknown = sorted(paths - UPDATABLE_PATHS)
        if unknown or not paths:
            problem = f"cannot update {', '.join(unknown)}" if unknown else "names no field"
            allowed = ", ".join(sorted(UPDATABLE_PATHS))
            raise invalid([FieldViolation("update_mask", f"{problem}; the fields that can be updated: {allowed}")])
        current = await self.get_user(user_id)
        violations: list[FieldViolation] = []
        if "display_name" in paths:
            violations += display_name_violations(fields.display_name, "user.display_name")
        if "role_bindings" in paths:
            violations += binding_violations(fields.role_bindings)
        if "password" in paths:
            violations += kind_password_violations(current.kind, fields.password)
        if violations:
            raise invalid(violations)
        new_hash = None
        if "password" in paths and current.kind == HUMAN:
            new_hash = await asyncio.to_thread(self._passwords.hash, fields.password)
        user = await self._users.update(
            user_id,
            etag=etag,
            now=self._clock(),
            display_name=fields.display_name if "display_name" in paths else None,
            bindings=normalized_bindings(fields.role_bindings) if "role_bindings" in paths else None,
            disabled=fields.disabled if "disabled" in paths else None,
            password_hash=new_hash,
        )
        if self._cache is not None:
            self._cache.invalidate_principal(user_id)
        self._record(
            "user.updated",
            "ok",
            actor,
            user_id=user_id,
            fields=",".join(sorted(paths)),
            roles=roles_text(user.role_bindings),
            disabled=user.disabled,
        )
        return user

    async def delete_user(self, user_id: str, etag: str = "", *, actor: Actor | None = None) -> None:
        """Delete a user with its API keys and refresh tokens; NotFound, Aborted on an etag mismatch,
        FailedPrecondition for the last enabled admin. Audited as user.deleted."""
        user = await self._users.delete(user_id, etag=etag)
        if self._cache is not None:
            self._cache.invalidate_principal(user_id)
        self._record("user.deleted", "ok", actor, user_id=user_id, username=user.username)

    async def count_admins(self) -> int:
        """Enabled users holding the admin role globally."""
        return await self._users.count_enabled_admins()
