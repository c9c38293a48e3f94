"""A Node.js client built from protos/ alone drives a task from registration to completion against `baton serve`.

tests/e2e/node/drive_task.js loads protos/baton/v1/*.proto with @grpc/proto-loader (no generated code, no
reflection), authenticates with `x-api-key`, registers a two-step handler (a -> b), creates a task (twice, with
one request_id), works both steps as a worker (PollSteps, CompleteStep) and reads the task back; then it checks the
error path, decoding the `grpc-status-details-bin` trailer with google.rpc types from google-proto-files.
scripts/test runs `npm ci` in tests/e2e/node; a missing node or node_modules fails this test, never skips it.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.e2e.conftest import REPO, BatonProcess

NODE_DIR = REPO / "tests" / "e2e" / "node"


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail("node is not on PATH: install Node.js (>= 18); scripts/test expects it", pytrace=False)
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail(
            f"{NODE_DIR}/node_modules is missing: run scripts/test (it runs `npm ci` there) or `npm ci` in it",
            pytrace=False,
        )
    return found


def test_node_client_drives_a_task_to_completion(node: str, baton: BatonProcess) -> None:
    done = subprocess.run(
        [node, "drive_task.js", baton.target, baton.api_key, "node-e2e"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"node failed:\n{done.stderr}\n--- server log ---\n{baton.log_text()[-3000:]}"
    summary = json.loads(done.stdout.strip().splitlines()[-1])

    # Every file of the contract was loaded straight from protos/.
    assert summary["proto_files"] == sorted(
        f"baton/v1/{path.name}" for path in (REPO / "protos" / "baton" / "v1").glob("*.proto")
    )
    assert summary["handler"] == {"name": "node-pipeline", "version": "1.0.0", "steps": ["a", "b"]}
    assert summary["created"]["state"] == "TASK_STATE_PENDING"
    assert summary["idempotent_retry_same_id"] is True

    # The worker got the task's context, leased a then b (b only after a), and both completions were accepted.
    assert summary["first_lease"]["context"] == {"order_id": 42, "customer": "node", "items": ["x", "y"]}
    assert int(summary["first_lease"]["fencing_token"]) > 0
    assert [(w["step"], w["outcome_code"], w["outcome_state"]) for w in summary["worked"]] == [
        ("a", 0, "STEP_STATE_COMPLETED"),
        ("b", 0, "STEP_STATE_COMPLETED"),
    ]
    assert {w["task_id"] for w in summary["worked"]} == {summary["created"]["id"]}
    assert summary["dependency_results"]["b"] == {"a": {"done_by": "node", "step": "a", "attempt": 1}}

    task = summary["task"]
    assert task["id"] == summary["created"]["id"]
    assert task["state"] == "TASK_STATE_COMPLETED"
    assert task["steps"] == {
        "a": {"state": "STEP_STATE_COMPLETED", "attempts": 1, "result": {"done_by": "node", "step": "a", "attempt": 1}},
        "b": {"state": "STEP_STATE_COMPLETED", "attempts": 1, "result": {"done_by": "node", "step": "b", "attempt": 1}},
    }

    # Errors: the status code, and google.rpc.Status in the trailer with ErrorInfo, ResourceInfo and RequestInfo.
    not_found = summary["not_found"]
    assert not_found["code"] == "NOT_FOUND"
    assert not_found["status_details"]["code"] == 5
    details = {d["type_url"].rsplit("/", 1)[-1]: d for d in not_found["status_details"]["details"]}
    assert details["google.rpc.ErrorInfo"]["reason"] == "TASK_NOT_FOUND"
    assert details["google.rpc.ErrorInfo"]["domain"] == "baton.dev"
    assert details["google.rpc.ResourceInfo"]["resource_name"] == "tasks/does-not-exist"
    assert details["google.rpc.RequestInfo"]["request_id"] == "node-e2e-missing-task"

    unauthenticated = summary["unauthenticated"]
    assert unauthenticated["code"] == "UNAUTHENTICATED"
    reasons = [d.get("reason") for d in unauthenticated["status_details"]["details"]]
    assert "CREDENTIALS_MISSING" in reasons
