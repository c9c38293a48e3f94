"""Write generated/ from protos/: grpcio-tools + mypy-protobuf output and the betterproto2 client package.

Run through `scripts/gen`. `--out DIR` writes elsewhere (the staleness test compares that with generated/).
The output depends only on protos/ and the pinned generator versions, so it is byte-for-byte repeatable.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
BIN = Path(sys.executable).parent


def proto_files() -> list[str]:
    """Every .proto under protos/, relative to it, sorted."""
    return sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))


def protoc(*args: str) -> None:
    """Run grpc_tools.protoc with protos/ on the include path."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTOS}", *args, *proto_files()]
    subprocess.run(cmd, check=True, cwd=PROTOS, env=env)


def generate(out: Path) -> None:
    """Write the whole generated/ tree into `out` (replacing what is there)."""
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp)
        grpc_out = stage / "grpc"
        bp_out = stage / "baton_betterproto"
        grpc_out.mkdir()
        bp_out.mkdir()
        protoc(
            f"--python_out={grpc_out}",
            f"--grpc_python_out={grpc_out}",
            f"--mypy_out=quiet:{grpc_out}",
            f"--mypy_grpc_out=quiet:{grpc_out}",
        )
        protoc(
            f"--python_betterproto2_out={bp_out}",
            "--python_betterproto2_opt=client_generation=sync_async",
        )
        # Only baton/v1 of the grpcio-tools output: `baton` is a namespace package shared with src/baton.
        # Files generated for options/common carry no services; their empty *_grpc modules are kept so every
        # proto has the same set of modules.
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        shutil.copytree(grpc_out / "baton", out / "baton")
        shutil.copytree(bp_out, out / "baton_betterproto")
        (out / "README.md").write_text(
            "# generated/\n\n"
            "Written by `scripts/gen` from `protos/`; never edit by hand. `tests/test_generated.py` fails when this\n"
            "tree differs from what `scripts/gen` would write.\n\n"
            "- `baton/v1/`: grpcio-tools `_pb2.py` / `_pb2_grpc.py` with mypy-protobuf `.pyi` stubs (used by the server).\n"
            "- `baton_betterproto/`: betterproto2 dataclasses and stubs (the typed client SDK's foundation).\n"
        )
        for path in sorted(out.rglob("*")):
            if path.is_dir() and path.name == "__pycache__":
                shutil.rmtree(path)


def update_readme_reference() -> bool:
    """Rewrite the configuration reference between the README's markers; True when it changed."""
    from baton.config import reference_markdown

    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"
    if start not in text or end not in text:
        return False
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    new = f"{head}{start}{reference_markdown()}{end}{tail}"
    if new != text:
        readme.write_text(new)
        return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "generated")
    args = parser.parse_args()
    generate(args.out.resolve())
    if args.out.resolve() == (ROOT / "generated").resolve() and update_readme_reference():
        print("updated the configuration reference in README.md")
    print(f"generated {len(proto_files())} proto files into {args.out}")


if __name__ == "__main__":
    main()
