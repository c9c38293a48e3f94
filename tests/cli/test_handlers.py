"""`baton handlers` against a real server, and the one-line errors of bad files."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.cli.conftest import ORDER_YAML, Baton


async def test_register_from_yaml_then_list_and_get(baton: Baton, tmp_path: Path) -> None:
    (tmp_path / "order.yaml").write_text(ORDER_YAML)
    result = await baton("handlers", "register", "-f", str(tmp_path / "order.yaml"))
    assert result.exit_code == 0, result.stderr
    assert "registered shop/order version 1.0.0 (4 steps)" in result.stdout

    listed = await baton("handlers", "list")
    assert "order" in listed.stdout
    assert "1.0.0" in listed.stdout
    shown = await baton("handlers", "get", "shop", "order")
    assert "payments.charge" in shown.stdout
    assert "charge, notify" in shown.stdout
    data = await baton.json("handlers", "get", "shop", "order", "--version", "1.0.0")
    assert [step["name"] for step in data["steps"]] == ["reserve", "charge", "notify", "ship"]
    assert data["steps"][1]["retryPolicy"]["maxAttempts"] == 5
    assert [h["name"] for h in await baton.json("handlers", "list", "--namespace", "shop")] == ["order"]


async def test_register_from_json_is_idempotent_and_a_changed_version_conflicts(baton: Baton, tmp_path: Path) -> None:
    definition = yaml.safe_load(ORDER_YAML)
    path = tmp_path / "order.json"
    path.write_text(json.dumps({"handler": definition}))
    first = await baton.json("handlers", "register", "-f", str(path))
    again = await baton.json("handlers", "register", "-f", str(path))
    assert first["definitionDigest"] == again["definitionDigest"]

    definition["steps"].pop()
    path.write_text(json.dumps(definition))
    changed = await baton("handlers", "register", "-f", str(path))
    assert changed.exit_code == 6
    assert changed.stderr.startswith("baton: ")
    assert "(request " in changed.stderr


async def test_bad_files_are_one_line_and_exit_2(baton: Baton, tmp_path: Path) -> None:
    missing = await baton("handlers", "register", "-f", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 2
    assert missing.stderr == f"baton: {tmp_path / 'nope.yaml'}: No such file or directory\n"

    (tmp_path / "bad.yaml").write_text("namespace: shop\nsteps: [\n")
    invalid = await baton("handlers", "register", "-f", str(tmp_path / "bad.yaml"))
    assert invalid.exit_code == 2
    assert invalid.stderr.startswith(f"baton: {tmp_path / 'bad.yaml'}: invalid YAML: ")
    assert invalid.stderr.count("\n") == 1

    (tmp_path / "bad.json").write_text("{")
    bad_json = await baton("handlers", "register", "-f", str(tmp_path / "bad.json"))
    assert bad_json.exit_code == 2
    assert "invalid JSON" in bad_json.stderr
    assert bad_json.stderr.count("\n") == 1

    (tmp_path / "unknown.yaml").write_text(ORDER_YAML + "colour: blue\n")
    unknown = await baton("handlers", "register", "-f", str(tmp_path / "unknown.yaml"))
    assert unknown.exit_code == 2
    assert unknown.stderr.splitlines()[0].endswith('has no field named "colour" at "Handler".')

    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    not_mapping = await baton("handlers", "register", "-f", str(tmp_path / "list.yaml"))
    assert not_mapping.exit_code == 2
    assert "expected a handler definition" in not_mapping.stderr


async def test_server_side_validation_lists_field_violations(baton: Baton, tmp_path: Path) -> None:
    path = tmp_path / "cycle.yaml"
    path.write_text(
        "namespace: shop\nname: loop\nversion: 1.0.0\nsteps:\n"
        "  - {name: a, step_handler: x, depends_on: [b]}\n  - {name: b, step_handler: x, depends_on: [a]}\n"
    )
    result = await baton("handlers", "register", "-f", str(path))
    assert result.exit_code == 2
    first, *violations = result.stderr.splitlines()
    assert first.startswith("baton: ")
    assert "(request " in first
    assert violations
    assert all(line.startswith("  - ") for line in violations)


async def test_unknown_handler_is_exit_4_one_line(baton: Baton) -> None:
    result = await baton("handlers", "get", "shop", "nope")
    assert result.exit_code == 4
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("baton: ")
    created = await baton("tasks", "create", "shop", "nope")
    assert created.exit_code == 4
    assert created.stderr.count("\n") == 1
