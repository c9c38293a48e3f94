"""Submit a few hundred orders to the order fulfilment workflow and watch them finish.

    python submit.py                  # registers handler.yaml, creates 300 tasks, waits, prints a summary
    python submit.py --tasks 50 --json

Reads BATON_TARGET (default 127.0.0.1:50051) and BATON_API_KEY, like the worker. Each task gets a request ID, so
running it again with the same --run-id creates nothing new (AIP-155).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from baton.client import AsyncClient
from baton_betterproto.baton.v1 import Handler, Task, TaskState

HERE = Path(__file__).resolve().parent
FINISHED = {TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED}
IN_FLIGHT = 32


def order(number: int) -> dict[str, Any]:
    """A made-up order."""
    lines = random.randint(1, 4)
    quantities = [random.randint(1, 3) for _ in range(lines)]
    return {
        "order_id": number,
        "email": f"customer{number}@example.com",
        "items": [{"sku": f"SKU-{random.randint(1, 500):04d}", "qty": qty} for qty in quantities],
        "amount_cents": sum(quantities) * random.choice([999, 1499, 2599]),
    }


def load_handler(path: Path) -> Handler:
    """The handler definition in `path`: the Handler message's proto3 JSON form, as YAML or JSON."""
    if path.suffix == ".json":
        return Handler.from_dict(json.loads(path.read_text()))
    import yaml  # PyYAML: a development dependency, so a runtime-only install uses handler.json

    return Handler.from_dict(yaml.safe_load(path.read_text()))


def default_handler_file() -> Path:
    """handler.yaml when PyYAML is installed, else the same definition as handler.json."""
    try:
        import yaml  # noqa: F401
    except ImportError:
        return HERE / "handler.json"
    return HERE / "handler.yaml"


async def create_all(client: AsyncClient, handler: Handler, count: int, run_id: str, progress: Progress) -> list[str]:
    """Create `count` tasks, IN_FLIGHT calls at a time; their IDs in order."""
    bar = progress.add_task("submitted", total=count)
    ids: list[str] = [""] * count
    numbers = iter(range(count))

    async def submitter() -> None:
        for number in numbers:
            task = await client.tasks.create(
                handler.namespace,
                handler.name,
                order(number),
                version=handler.version,
                tags=[f"run-{run_id}"],
                request_id=f"order-{run_id}-{number:05d}",
            )
            ids[number] = task.id
            progress.advance(bar)

    await asyncio.gather(*(submitter() for _ in range(min(IN_FLIGHT, count))))
    return ids


async def list_run(client: AsyncClient, namespace: str, run_id: str, read_mask: list[str]) -> list[Task]:
    """Every task of this run (tagged run-<run_id>)."""
    tasks: list[Task] = []
    token = ""
    while True:
        page = await client.tasks.list(
            namespace, filter=f'tags:"run-{run_id}"', page_size=1000, page_token=token, read_mask=read_mask
        )
        tasks.extend(page.tasks)
        token = page.next_page_token
        if not token:
            return tasks


async def wait_finished(
    client: AsyncClient, namespace: str, run_id: str, count: int, progress: Progress, wait: float
) -> None:
    """Refresh the progress bars until every task of the run has finished (or `wait` seconds pass)."""
    bars = {
        state: progress.add_task(state.name.lower(), total=count) for state in (TaskState.COMPLETED, TaskState.FAILED)
    }
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        states = Counter(task.state for task in await list_run(client, namespace, run_id, ["id", "state"]))
        for state, bar in bars.items():
            progress.update(bar, completed=states.get(state, 0))
        if sum(states.get(state, 0) for state in FINISHED) >= count:
            return
        await asyncio.sleep(0.25)


def summarise(tasks: list[Task], seconds: float) -> dict[str, Any]:
    """Counts by state, retries seen, wall time."""
    states = Counter(TaskState(task.state).name for task in tasks)
    retries = Counter(step.name for task in tasks for step in task.steps for _ in range(max(step.attempts - 1, 0)))
    return {
        "tasks": len(tasks),
        "completed": states.get("COMPLETED", 0),
        "failed": states.get("FAILED", 0),
        "cancelled": states.get("CANCELLED", 0),
        "unfinished": sum(n for state, n in states.items() if state not in ("COMPLETED", "FAILED", "CANCELLED")),
        "retries": sum(retries.values()),
        "retries_by_step": dict(retries),
        "seconds": round(seconds, 2),
        "tasks_per_second": round(len(tasks) / seconds, 1) if seconds else 0.0,
    }


async def main(args: argparse.Namespace) -> int:
    console = Console(stderr=args.json)
    run_id = args.run_id or uuid.uuid4().hex[:8]
    async with await AsyncClient.connect(args.target, api_key=args.api_key) as client:
        handler = await client.handlers.register(load_handler(args.handler_file))
        console.print(f"registered [bold]{handler.namespace}/{handler.name}[/] {handler.version}; run {run_id}")
        started = time.perf_counter()
        with Progress(
            TextColumn("{task.description:>10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            ids = await create_all(client, handler, args.tasks, run_id, progress)
            await wait_finished(client, handler.namespace, run_id, args.tasks, progress, args.timeout)
        seconds = time.perf_counter() - started
        summary = summarise(await list_run(client, handler.namespace, run_id, ["id", "state", "steps"]), seconds)
    summary["run_id"] = run_id
    summary["example_task"] = ids[0] if ids else ""
    table = Table(title=f"order fulfilment, run {run_id}")
    for column in ("tasks", "completed", "failed", "unfinished", "retries", "seconds", "tasks_per_second"):
        table.add_column(column.replace("_", " "), justify="right")
    table.add_row(
        *(
            str(summary[c])
            for c in ("tasks", "completed", "failed", "unfinished", "retries", "seconds", "tasks_per_second")
        )
    )
    console.print(table)
    if summary["retries_by_step"]:
        by_step = sorted(summary["retries_by_step"].items())
        console.print("retries by step: " + ", ".join(f"{name} {count}" for name, count in by_step))
    example = summary["example_task"]
    console.print(f"look at one: baton tasks get {example}    baton tasks graph {example}")
    if args.json:
        print(json.dumps(summary), flush=True)
    return 0 if summary["unfinished"] == 0 else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=300, help="orders to submit (default 300)")
    parser.add_argument("--target", default=os.environ.get("BATON_TARGET", "127.0.0.1:50051"))
    parser.add_argument("--api-key", default=os.environ.get("BATON_API_KEY"))
    parser.add_argument("--handler-file", type=Path, default=default_handler_file())
    parser.add_argument("--run-id", default="", help="reuse a run ID: its tasks are not created twice")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the tasks to finish")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON line on stdout")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
