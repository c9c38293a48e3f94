"""generated/ is exactly what scripts/codegen.py writes from protos/, and every proto has its modules."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "generated"
PROTOS = ROOT / "protos"
GRPC_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def tree_files(root: Path) -> dict[str, bytes]:
    """Every file under `root` (bytecode caches aside), keyed by its path relative to `root`."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_generated_code_is_current(tmp_path: Path) -> None:
    fresh_root = tmp_path / "gen"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "codegen.py"), "--out", str(fresh_root)],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    committed = tree_files(GENERATED)
    fresh = tree_files(fresh_root)

    missing = sorted(fresh.keys() - committed.keys())
    extra = sorted(committed.keys() - fresh.keys())
    differing = sorted(name for name in fresh.keys() & committed.keys() if fresh[name] != committed[name])
    problems = [f"differs: {name}" for name in differing]
    problems += [f"missing from generated/: {name}" for name in missing]
    problems += [f"not written by codegen (extra): {name}" for name in extra]
    assert not problems, "generated/ is stale; run scripts/gen:\n" + "\n".join(problems)


def test_every_proto_has_its_grpc_modules() -> None:
    protos = sorted(PROTOS.rglob("*.proto"))
    assert any(proto.parent == PROTOS / "baton" / "v1" for proto in protos), "no .proto under protos/baton/v1"
    missing: list[str] = []
    for proto in protos:
        # protos/baton/v1/tasks.proto -> generated/baton/v1/tasks_pb2.py, tasks_pb2.pyi, tasks_pb2_grpc.py
        stem = proto.relative_to(PROTOS).with_suffix("").as_posix()
        for suffix in GRPC_SUFFIXES:
            if not (GENERATED / f"{stem}{suffix}").is_file():
                missing.append(f"generated/{stem}{suffix}")
    assert not missing, "missing generated modules (run scripts/gen): " + ", ".join(missing)


def test_generated_packages_import() -> None:
    tasks_grpc = importlib.import_module("baton.v1.tasks_pb2_grpc")
    assert hasattr(tasks_grpc, "TaskServiceStub")
    assert hasattr(tasks_grpc, "TaskServiceServicer")

    client = importlib.import_module("baton_betterproto.baton.v1")
    assert hasattr(client, "Task")
    assert hasattr(client, "TaskServiceStub")
    assert hasattr(client, "TaskServiceAsyncStub")
