"""`baton tasks` against a real server: create (one and many), list, get, cancel, retry, resolve-step, graph, watch."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.cli.conftest import ORDER_YAML, Baton


async def _register(baton: Baton, tmp_path: Path) -> None:
    (tmp_path / "order.yaml").write_text(ORDER_YAML)
    result = await baton("handlers", "register", "-f", str(tmp_path / "order.yaml"))
    assert result.exit_code == 0, result.stderr


async def test_create_get_and_list(baton: Baton, tmp_path: Path) -> None:
    await _register(baton, tmp_path)
    created = await baton(
        "tasks", "create", "shop", "order", "-c", '{"order_id": 42}', "-t", "web", "--request-id", "o-42"
    )
    assert created.exit_code == 0, created.stderr
    assert created.stdout.startswith("created: ")
    assert "shop/order 1.0.0" in created.stdout
    task = await baton.json(
        "tasks", "create", "shop", "order", "-c", '{"order_id": 42}', "-t", "web", "--request-id", "o-42"
    )
    assert task["context"] == {"order_id": 42}
    assert task["tags"] == ["web"]

    shown = await baton("tasks", "get", task["id"])
    assert task["id"] in shown.stdout
    assert "stock.reserve" in shown.stdout
    assert "READY" in shown.stdout
    assert next(s["name"] for s in (await baton.json("tasks", "get", task["id"]))["steps"]) == "reserve"

    (tmp_path / "ctx.yaml").write_text("order_id: 7\n")
    await baton("tasks", "create", "shop", "order", "--context-file", str(tmp_path / "ctx.yaml"))
    listed = await baton.json("tasks", "list", "shop")
    assert len(listed) == 2  # the same request ID returned the same task
    table = await baton("tasks", "list", "shop", "--limit", "1")
    assert "more tasks match" in table.stdout
    filtered = await baton.json("tasks", "list", "shop", "--filter", 'tags:"web"')
    assert [t["id"] for t in filtered] == [task["id"]]


async def test_create_many_with_batches(baton: Baton, tmp_path: Path) -> None:
    await _register(baton, tmp_path)
    result = await baton("tasks", "create", "shop", "order", "--count", "620", "--request-id", "load")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("created 620 tasks of shop/order")
    assert len(await baton.json("tasks", "list", "shop", "--limit", "0")) == 620


async def test_bad_context_is_exit_2(baton: Baton, tmp_path: Path) -> None:
    await _register(baton, tmp_path)
    bad = await baton("tasks", "create", "shop", "order", "-c", "{oops")
    assert bad.exit_code == 2
    assert bad.stderr.startswith("baton: --context: invalid JSON")
    assert bad.stderr.count("\n") == 1
    not_object = await baton("tasks", "create", "shop", "order", "-c", "[1]")
    assert not_object.exit_code == 2
    assert "expected a JSON object" in not_object.stderr


async def test_cancel_retry_resolve_graph_and_watch(baton: Baton, tmp_path: Path) -> None:
    await _register(baton, tmp_path)
    task_id = (await baton.json("tasks", "create", "shop", "order"))["id"]

    graph = await baton("tasks", "graph", task_id)
    assert graph.exit_code == 0, graph.stderr
    assert "critical path: reserve → charge → ship" in graph.stdout
    assert "bottlenecks: reserve (blocks 3)" in graph.stdout
    graph_data = await baton.json("tasks", "graph", task_id)
    assert {node["stepName"] for node in graph_data["nodes"]} == {"reserve", "charge", "notify", "ship"}

    resolved = await baton("tasks", "resolve-step", task_id, "reserve", "--result", '{"sku": "A1"}')
    assert resolved.exit_code == 0
    assert resolved.stdout.startswith("resolved reserve: ")
    after = await baton("tasks", "graph", task_id)
    assert "RESOLVED_MANUALLY" in after.stdout
    assert "reserve ✓" in after.stdout

    retry = await baton("tasks", "retry", task_id)
    assert retry.exit_code == 6
    assert retry.stderr.count("\n") == 1

    # watch follows the task live until it ends; resolving every step completes it -> exit 0
    # The resolve commands run as processes of their own: CliRunner swaps the process-wide sys.stdout, so an
    # in-process command finishing while the watch finishes (the last resolve ends the watch) clobbers its output.
    watch = asyncio.create_task(baton("tasks", "watch", task_id))
    await asyncio.sleep(0.5)
    for step in ("charge", "notify", "ship"):
        code, _out, err = await baton.process("tasks", "resolve-step", task_id, step)
        assert code == 0, err
    watched = await asyncio.wait_for(watch, 20)
    assert watched.exit_code == 0, watched.stderr
    assert "COMPLETED" in watched.stdout
    assert "4/4 steps done" in watched.stdout

    finished = await baton("tasks", "cancel", task_id)
    assert finished.exit_code == 6

    quiet = await baton("tasks", "create", "shop", "order", "-q")
    other = quiet.stdout.strip()
    assert quiet.stdout == other + "\n"
    assert len(other) == 36
    cancelled = await baton("tasks", "cancel", other, "--reason", "not needed")
    assert cancelled.exit_code == 0
    assert "CANCELLED" in cancelled.stdout
    watch_cancelled = await baton("tasks", "watch", other)
    assert watch_cancelled.exit_code == 7
    assert "CANCELLED" in watch_cancelled.stdout
    lines = (await baton("tasks", "watch", other, "-o", "json")).stdout.splitlines()
    assert json.loads(lines[0])["snapshot"]["state"] == "TASK_STATE_CANCELLED"


async def test_unknown_task_is_exit_4(baton: Baton) -> None:
    for command in (["get"], ["cancel"], ["graph"], ["watch"]):
        result = await baton("tasks", *command, "01a201cb-65f9-75f7-9f73-051aed0e539e")
        assert result.exit_code == 4, (command, result.stderr)
        assert result.stderr.count("\n") == 1
