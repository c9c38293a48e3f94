"""What goes wrong looks the same everywhere: one line on stderr, a meaningful exit code, never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.cli.conftest import ORDER_YAML, Baton


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_server_down_is_exit_3_one_line(tmp_path: Path) -> None:
    baton = Baton(f"127.0.0.1:{_free_port()}", tmp_path)
    code, out, err = await baton.process("tasks", "list", "shop")
    assert code == 3
    assert err.startswith("baton: server unavailable: ")
    assert err.count("\n") == 1
    assert out == ""
    result = await baton("handlers", "get", "shop", "order")
    assert result.exit_code == 3


async def test_a_real_process_reports_bad_input_in_one_line(baton: Baton, tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("steps: [\n")
    code, _, err = await baton.process("handlers", "register", "-f", str(tmp_path / "bad.yaml"))
    assert code == 2
    assert err.count("\n") == 1
    assert "invalid YAML" in err
    code, _, err = await baton.process("handlers", "register", "-f", str(tmp_path / "missing.yaml"))
    assert code == 2
    assert err == f"baton: {tmp_path / 'missing.yaml'}: No such file or directory\n"
    code, _, err = await baton.process("tasks", "create", "shop", "nope")
    assert code == 4
    assert err.count("\n") == 1
    code, _, err = await baton.process("whoami", api_key=None)
    assert code == 5
    assert "run `baton login` or set BATON_API_KEY" in err
    (tmp_path / "order.yaml").write_text(ORDER_YAML)
    code, out, err = await baton.process("handlers", "register", "-f", str(tmp_path / "order.yaml"), "-o", "json")
    assert code == 0, err
    assert '"name": "order"' in out


async def test_usage_errors_are_exit_2(baton: Baton) -> None:
    result = await baton("tasks", "create", "shop")
    assert result.exit_code == 2
    result = await baton("tasks", "list", "shop", "-o", "yaml")
    assert result.exit_code == 2


async def test_help_documents_exit_codes() -> None:
    baton = Baton("127.0.0.1:1", Path("/nonexistent"))
    result = await baton("--help")
    assert "Exit codes: 0 ok" in result.stdout
    result = await baton("tasks", "watch", "--help")
    assert "7" in result.stdout
    assert "BATON_API_KEY" in result.stdout
