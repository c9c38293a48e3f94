"""The public surface of baton.auth, pinned so that changing it is a decision."""

from __future__ import annotations

import ast
from pathlib import Path

import baton.auth

EXPORTS = {
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
}


def test_export_list_is_pinned() -> None:
    assert set(baton.auth.__all__) == EXPORTS
    for name in EXPORTS:
        assert getattr(baton.auth, name) is not None


def test_no_grpc_or_generated_code_is_imported() -> None:
    for module in Path(baton.auth.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert not name.startswith(("grpc", "baton.v1", "baton_betterproto")), f"{module.name}: {name}"
