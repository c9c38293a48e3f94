"""The first admin: at start, when no enabled global admin exists, create the service account `admin`.

With BATON_BOOTSTRAP_ADMIN_API_KEY the account holds that key (stored as its SHA-256, any format); without it a
new key is made and returned once, for the caller to print. The account and its key are created in one
transaction. Several replicas starting at once are safe: the username is unique, so one creates the account
and the others find an admin afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from baton.auth.credential_repository import ApiKeyRecord
from baton.auth.manager import AuthManager
from baton.auth.principal import Role, RoleBinding
from baton.auth.repository import UserRecord
from baton.errors import AlreadyExists, FailedPrecondition

BOOTSTRAP_USERNAME = "admin"


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    """What ensure_bootstrap_admin did. `generated_key` is set only when it made a key: show it once."""

    created: bool
    user: UserRecord | None = None
    api_key: ApiKeyRecord | None = None
    generated_key: str | None = None


async def ensure_bootstrap_admin(manager: AuthManager, key: str | None) -> BootstrapResult:
    """Create the `admin` service account with a global admin binding and one API key, unless an enabled
    admin exists. FailedPrecondition when no admin exists but the name `admin` is taken by another user."""
    if await manager.count_admins() > 0:
        return BootstrapResult(created=False)
    try:
        user, record, issued = await manager.create_service_account_with_key(
            BOOTSTRAP_USERNAME, "Bootstrap admin", [RoleBinding(Role.ADMIN)], key
        )
    except AlreadyExists:
        if await manager.count_admins() > 0:  # another replica won the race
            return BootstrapResult(created=False)
        raise FailedPrecondition(
            f"no enabled admin exists and the username {BOOTSTRAP_USERNAME!r} is taken by a user that is not an "
            "enabled admin; rename or delete that user, or enable it and grant it a global admin binding",
            reason="BOOTSTRAP_BLOCKED",
        ) from None
    return BootstrapResult(created=True, user=user, api_key=record, generated_key=issued if key is None else None)
