"""`baton tasks`: create tasks (one, or many with a progress bar), list, show, steer, graph and watch them."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from baton.cli import _output as out
from baton.cli import tasks_view as view
from baton.cli._client_cli import CLI, EXIT_CODES_HELP, CliError, client_command
from baton.cli._common import EXIT_TASK_FAILED, EXIT_USAGE
from baton.cli._files import json_object

if TYPE_CHECKING:
    from baton.client import Client
    from baton_betterproto.baton.v1 import Task

tasks_app = typer.Typer(help="Create, inspect and steer tasks.", epilog=EXIT_CODES_HELP, no_args_is_help=True)

#: Tasks per BatchCreateTasks call of `tasks create --count` (the server takes up to 1000).
BATCH_SIZE = 500
TaskId = Annotated[str, typer.Argument(help="The task's ID.", show_default=False)]


def _show(cli: CLI, task: Task, message: str = "") -> None:
    if cli.json:
        out.emit_json(task)
    elif message:
        out.show(f"{message}: {view.task_title(task)}")
    else:
        view.show_task(task)


def _create_many(client: Client, namespace: str, count: int, request_id: str, **fields: Any) -> list[Task]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from baton.client import create_task_request

    created: list[Task] = []
    columns = (TextColumn("creating tasks"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=out.console(stderr=True), transient=True) as progress:
        bar = progress.add_task("create", total=count)
        for start in range(0, count, BATCH_SIZE):
            numbers = range(start, min(count, start + BATCH_SIZE))
            requests = [
                create_task_request(namespace, request_id=f"{request_id}-{n}" if request_id else "", **fields)
                for n in numbers
            ]
            created.extend(client.tasks.batch_create(namespace, requests))
            progress.update(bar, advance=len(requests))
    return created


@tasks_app.command("create")
@client_command()
def create(
    cli: CLI,
    namespace: Annotated[str, typer.Argument(help="The handler's namespace.", show_default=False)],
    handler: Annotated[str, typer.Argument(help="The handler's name.", show_default=False)],
    version: Annotated[str, typer.Option("--version", "-v", help="Handler version (default: the latest).")] = "",
    context: Annotated[str | None, typer.Option("--context", "-c", help="The task's context as a JSON object.")] = None,
    context_file: Annotated[
        Path | None, typer.Option("--context-file", help="The context from a JSON or YAML file.")
    ] = None,
    tags: Annotated[list[str] | None, typer.Option("--tag", "-t", help="A tag (repeatable).")] = None,
    priority: Annotated[int, typer.Option(help="Priority, -1000..1000.")] = 0,
    correlation_id: Annotated[str, typer.Option(help="Correlation ID carried into every lease.")] = "",
    request_id: Annotated[
        str, typer.Option(help="Idempotency key: the same key returns the same task (with --count, KEY-<n>).")
    ] = "",
    count: Annotated[int, typer.Option(help="Create this many tasks (BatchCreateTasks, with a progress bar).")] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the task IDs, one per line.")] = False,
) -> None:
    """Create a task of HANDLER (or --count of them) and print it."""
    if count < 1:
        raise CliError("--count must be at least 1", EXIT_USAGE)
    fields: dict[str, Any] = {
        "handler": handler,
        "context": json_object(context, context_file, "--context"),
        "version": version,
        "tags": tags or [],
        "priority": priority,
        "correlation_id": correlation_id,
    }
    with cli.connect() as client:
        if count == 1:
            options: Any = {"request_id": request_id} if request_id else {}
            created = [
                client.tasks.create(namespace, fields.pop("handler"), fields.pop("context"), **fields, **options)
            ]
        else:
            created = _create_many(client, namespace, count, request_id, **fields)
    if quiet:
        typer.echo("\n".join(task.id for task in created))
    elif count == 1:
        _show(cli, created[0], "created")
    elif cli.json:
        out.emit_json(created)
    else:
        out.show(
            f"created {len(created)} tasks of {namespace}/{handler} (first {created[0].id}, last {created[-1].id})"
        )


@tasks_app.command("list")
@client_command()
def list_tasks(
    cli: CLI,
    namespace: Annotated[str, typer.Argument(help="The namespace.", show_default=False)],
    filter: Annotated[
        str, typer.Option("--filter", "-f", help="AIP-160 filter, e.g. 'state = RUNNING AND tags:\"web\"'.")
    ] = "",
    limit: Annotated[int, typer.Option(help="At most this many tasks (pages through); 0 for all.")] = 50,
) -> None:
    """List a namespace's tasks, newest first."""
    found: list[Task] = []
    with cli.connect() as client:
        token = ""
        while limit <= 0 or len(found) < limit:
            page_size = min(limit - len(found), 100) if limit > 0 else 100
            response = client.tasks.list(namespace, filter=filter, page_size=page_size, page_token=token)
            found.extend(response.tasks)
            token = response.next_page_token
            if not token:
                break
    found = found[:limit] if limit > 0 else found
    if cli.json:
        out.emit_json(found)
        return
    out.show(out.table(None, view.TASK_COLUMNS, view.task_rows(found)) if found else "[dim]no tasks[/]")
    if token:
        out.show(f"[dim]more tasks match: raise --limit (now {limit}) or use 0 for all[/]")


@tasks_app.command("get")
@client_command()
def get(cli: CLI, task_id: TaskId) -> None:
    """Show a task and its steps."""
    with cli.connect() as client:
        _show(cli, client.tasks.get(task_id))


@tasks_app.command("cancel")
@client_command()
def cancel(
    cli: CLI,
    task_id: TaskId,
    reason: Annotated[str, typer.Option(help="Why (kept in the task's events).")] = "",
) -> None:
    """Cancel a task: its pending and ready steps at once, running ones at their next heartbeat. A finished task
    exits 6."""
    with cli.connect() as client:
        _show(cli, client.tasks.cancel(task_id, reason=reason), "cancelled")


@tasks_app.command("retry")
@client_command()
def retry(cli: CLI, task_id: TaskId) -> None:
    """Put the failed steps of a failed task back to READY."""
    with cli.connect() as client:
        _show(cli, client.tasks.retry(task_id), "retrying")


@tasks_app.command("resolve-step")
@client_command()
def resolve_step(
    cli: CLI,
    task_id: TaskId,
    step: Annotated[str, typer.Argument(help="The step's name.", show_default=False)],
    result: Annotated[str | None, typer.Option("--result", "-r", help="The step's result as a JSON object.")] = None,
    result_file: Annotated[Path | None, typer.Option(help="The result from a JSON or YAML file.")] = None,
    reason: Annotated[str, typer.Option(help="Why (kept in the task's events).")] = "",
) -> None:
    """Resolve a step by hand with a result; the steps depending on it proceed."""
    data = json_object(result, result_file, "--result")
    with cli.connect() as client:
        _show(cli, client.tasks.resolve_step(task_id, step, data, reason=reason), f"resolved {step}")


@tasks_app.command("graph")
@client_command()
def graph(cli: CLI, task_id: TaskId) -> None:
    """Show a task's DAG by level: each step's state and dependencies, the critical path (★), the bottlenecks (⚠)
    and each step's impact score."""
    with cli.connect() as client:
        task_graph = client.tasks.graph(task_id)
        if cli.json:
            out.emit_json(task_graph)
            return
        task = client.tasks.get(task_id, read_mask=["id", "namespace", "handler_name", "handler_version", "state"])
    view.show_graph(task_graph, task)


@tasks_app.command("watch")
@client_command()
def watch(cli: CLI, task_id: TaskId) -> None:
    """Follow a task's steps live until the task ends. Exits 0 when it COMPLETED and 7 when it FAILED or was
    CANCELLED. With `-o json`, prints the snapshot and each event as one JSON line."""
    from rich.live import Live

    state = view.WatchView(task_id)
    with cli.connect() as client, contextlib.ExitStack() as stack:
        live = (
            None if cli.json else stack.enter_context(Live(state.render(), console=out.console(), auto_refresh=False))
        )

        def open_stream(after: int) -> Any:
            return client.tasks.watch(task_id, after_sequence=after)

        for item in view.iterate_until_finished(state, open_stream):
            if item.snapshot is not None:
                state.take_snapshot(item.snapshot)
            elif item.event is not None:
                state.take_event(item.event)
            if live is not None:
                live.update(state.render(), refresh=True)
            else:
                out.emit_line(item)
    if state.state != "COMPLETED":
        raise typer.Exit(EXIT_TASK_FAILED)
