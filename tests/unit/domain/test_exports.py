"""The public surface of baton.domain, pinned, and the purity of the package: no I/O, gRPC, SQL or config."""

from __future__ import annotations

import ast
from pathlib import Path

import baton.domain

EXPORTS = {
    "DONE_STATES",
    "INVALID_TRANSITION",
    "LEASE_EXPIRED",
    "MAX_DEPENDENCIES",
    "MAX_STEPS",
    "STEP_TRANSITIONS",
    "TASK_TRANSITIONS",
    "DagNode",
    "EdgeInfo",
    "GraphAnalysis",
    "GraphStep",
    "GraphWeights",
    "HandlerDefaults",
    "HandlerDefinition",
    "NodeAnalysis",
    "RetryDecision",
    "RetryDefaults",
    "RetryPolicy",
    "StepDefinition",
    "StepSpec",
    "StepState",
    "TaskState",
    "VersionKey",
    "analyze_graph",
    "backoff_ceiling",
    "backoff_delay",
    "canonical_definition",
    "decide_lease_expiry",
    "decide_retry",
    "definition_digest",
    "dependents",
    "derive_task_state",
    "descendants",
    "estimated_duration",
    "initially_ready",
    "is_final",
    "parse_semver",
    "ready_after",
    "require_valid_handler",
    "resolve_retry_policy",
    "resolve_step",
    "topological_order",
    "transition_step",
    "transition_task",
    "validate_dag",
    "validate_handler",
    "validate_retry_policy",
}
#: Everything the domain may import: the standard library's pure parts, itself and the error tree.
ALLOWED_IMPORTS = {
    "__future__",
    "collections.abc",
    "dataclasses",
    "enum",
    "hashlib",
    "heapq",
    "json",
    "math",
    "random",
    "re",
    "types",
    "typing",
    "baton.errors",
}


def test_export_list_is_pinned() -> None:
    assert set(baton.domain.__all__) == EXPORTS
    for name in EXPORTS:
        assert getattr(baton.domain, name) is not None


def test_the_domain_imports_nothing_impure() -> None:
    for module in Path(baton.domain.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name in ALLOWED_IMPORTS or name.startswith("baton.domain."), f"{module.name}: {name}"
