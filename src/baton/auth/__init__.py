"""Authentication and authorization: principals and permissions, credentials, users, the audit log.

Nothing here imports gRPC or generated code; the server's interceptors and servicers convert at the boundary.
See baton.auth.manager for how the pieces are wired together at start-up.
"""

from baton.auth.api_keys import UsageRecorder, generate_api_key, key_digest
from baton.auth.audit import AUDIT_DROPPED, AuditEventRecord, AuditLog, parse_filter
from baton.auth.authenticator import CachingAuthenticator, user_principal
from baton.auth.bootstrap import BootstrapResult, ensure_bootstrap_admin
from baton.auth.credential_repository import ApiKeyRecord
from baton.auth.interfaces import AuditRecord, AuditSink, Authenticator
from baton.auth.manager import UPDATABLE_PATHS, Actor, AuthManager, CredentialCache, TokenGrant, UserChanges
from baton.auth.passwords import MIN_PASSWORD_LENGTH, Passwords
from baton.auth.principal import PERMISSIONS, ROLE_PERMISSIONS, Principal, Role, RoleBinding
from baton.auth.repository import UserRecord
from baton.auth.tokens import IssuedToken, TokenClaims, TokenCodec

__all__ = [
    "AUDIT_DROPPED",
    "MIN_PASSWORD_LENGTH",
    "PERMISSIONS",
    "ROLE_PERMISSIONS",
    "UPDATABLE_PATHS",
    "Actor",
    "ApiKeyRecord",
    "AuditEventRecord",
    "AuditLog",
    "AuditRecord",
    "AuditSink",
    "AuthManager",
    "Authenticator",
    "BootstrapResult",
    "CachingAuthenticator",
    "CredentialCache",
    "IssuedToken",
    "Passwords",
    "Principal",
    "Role",
    "RoleBinding",
    "TokenClaims",
    "TokenCodec",
    "TokenGrant",
    "UsageRecorder",
    "UserChanges",
    "UserRecord",
    "ensure_bootstrap_admin",
    "generate_api_key",
    "key_digest",
    "parse_filter",
    "user_principal",
]
