"""How tasks look in a terminal: a task and its steps, the layered DAG of `tasks graph`, the live table of
`tasks watch`."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from baton.cli import _output as out

if TYPE_CHECKING:
    from rich.console import Group
    from rich.table import Table

    from baton_betterproto.baton.v1 import Task, TaskEvent, TaskGraph

FINAL_TASK_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
_DONE_STEPS = frozenset({"COMPLETED", "RESOLVED_MANUALLY"})


def task_title(task: Task) -> str:
    """`<id>  shop/order 1.0.0  RUNNING` as markup."""
    handler = f"{task.namespace}/{task.handler_name} {task.handler_version}"
    return f"[bold]{task.id}[/]  {handler}  {out.styled_state(task.state)}"


def task_rows(tasks: Iterable[Task]) -> list[list[str]]:
    """Rows of the `tasks list` table."""
    rows = []
    for task in tasks:
        rows.append(
            [
                task.id,
                f"{task.handler_name} {task.handler_version}",
                out.styled_state(task.state),
                str(task.priority),
                ", ".join(task.tags) or "-",
                out.when(task.create_time),
                out.when(task.update_time),
            ]
        )
    return rows


TASK_COLUMNS = ["id", "handler", "state", "priority", "tags", "created", "updated"]


def show_task(task: Task) -> None:
    """Print a task, its context and its steps."""
    details = [task_title(task)]
    details.append(
        f"created {out.when(task.create_time)} by {task.creator or '-'}"
        + (f", finished {out.when(task.complete_time)}" if task.complete_time else "")
        + f"   priority {task.priority}   tags {', '.join(task.tags) or '-'}"
    )
    if task.correlation_id or task.request_id:
        details.append(f"correlation {task.correlation_id or '-'}   request {task.request_id or '-'}")
    details.append(f"context {out.compact_json(task.context.to_dict() if task.context else None, 100)}")
    rows = []
    for step in task.steps:
        error = step.last_error
        rows.append(
            [
                step.name,
                out.styled_state(step.state),
                step.step_handler,
                f"{step.attempts}/{step.max_attempts}",
                ", ".join(step.depends_on) or "-",
                step.worker_id or "-",
                out.when(step.complete_time or step.start_time),
                f"{error.error_type}: {error.message}" if error and error.error_type else "-",
            ]
        )
    columns = ["step", "state", "step handler", "attempts", "depends on", "worker", "started/finished", "last error"]
    out.show(*details, out.table(None, columns, rows))


def levels(graph: TaskGraph) -> dict[str, int]:
    """Each step's topological level: 0 without dependencies, else one more than its deepest dependency."""
    parents: dict[str, list[str]] = {node.step_name: [] for node in graph.nodes}
    for edge in graph.edges:
        parents.setdefault(edge.to_step, []).append(edge.from_step)
    found: dict[str, int] = {}

    def level(name: str, path: frozenset[str]) -> int:
        if name not in found:
            deeper = [level(parent, path | {name}) for parent in parents.get(name, []) if parent not in path]
            found[name] = 1 + max(deeper) if deeper else 0
        return found[name]

    for name in parents:
        level(name, frozenset())
    return found


def graph_table(graph: TaskGraph) -> Table:
    """The DAG laid out by level: one row per step, its dependencies (✓ when satisfied) and its analysis."""
    by_level = levels(graph)
    needs: dict[str, list[str]] = {}
    for edge in graph.edges:
        needs.setdefault(edge.to_step, []).append(
            f"{edge.from_step} {'[green]✓[/]' if edge.satisfied else '[dim]…[/]'}"
        )
    bottlenecks = set(graph.bottleneck_steps)
    order = sorted(graph.nodes, key=lambda node: (by_level.get(node.step_name, 0), node.step_name))
    rows, previous = [], -1
    for node in order:
        level = by_level.get(node.step_name, 0)
        marks = ("[magenta]★ critical[/] " if node.on_critical_path else "") + (
            "[red]⚠ bottleneck[/]" if node.step_name in bottlenecks else ""
        )
        name = f"[bold]{node.step_name}[/]" if node.on_critical_path else node.step_name
        rows.append(
            [
                str(level) if level != previous else "",
                ("└─ " if level else "● ") + name,
                out.styled_state(node.state),
                ", ".join(needs.get(node.step_name, [])) or "-",
                out.duration(node.duration),
                str(node.attempts),
                str(node.downstream_count),
                f"{node.impact_score:.2f}",
                marks.strip() or "",
            ]
        )
        previous = level
    columns = ["level", "step", "state", "needs", "duration", "attempts", "blocks", "impact", ""]
    return out.table(None, columns, rows)


def show_graph(graph: TaskGraph, task: Task | None) -> None:
    """Print the layered DAG, the critical path, the bottlenecks and the steps by impact."""
    lines: list[Any] = [task_title(task) if task else f"[bold]{graph.task_id}[/]", graph_table(graph)]
    if graph.critical_path:
        path = " → ".join(graph.critical_path)
        lines.append(f"[magenta]critical path[/]: {path} ({out.duration(graph.critical_path_duration)})")
    nodes = {node.step_name: node for node in graph.nodes}
    if graph.bottleneck_steps:
        names = [f"{name} (blocks {nodes[name].downstream_count})" for name in graph.bottleneck_steps if name in nodes]
        lines.append(f"[red]bottlenecks[/]: {', '.join(names)}")
    ranked = sorted(graph.nodes, key=lambda node: -node.impact_score)[:5]
    if ranked:
        lines.append("impact: " + ", ".join(f"{node.step_name} {node.impact_score:.2f}" for node in ranked))
    out.show(*lines)


@dataclass
class StepView:
    """What the live table shows of one step."""

    state: str
    attempts: int
    max_attempts: int
    step_handler: str
    note: str = ""


@dataclass
class WatchView:
    """The state of a watched task, folded from its snapshot and events."""

    task_id: str
    title: str = ""
    state: str = ""
    steps: dict[str, StepView] = field(default_factory=dict)
    last_sequence: int = 0
    events: int = 0

    def take_snapshot(self, task: Task) -> None:
        """Start from a snapshot of the task."""
        self.title = f"{task.namespace}/{task.handler_name} {task.handler_version}"
        self.state = out.state_name(task.state)
        for step in task.steps:
            error = step.last_error
            note = f"{error.error_type}: {error.message}" if error and error.error_type else ""
            self.steps[step.name] = StepView(
                out.state_name(step.state), step.attempts, step.max_attempts, step.step_handler, note
            )

    def take_event(self, event: TaskEvent) -> None:
        """Apply one event."""
        self.events += 1
        self.last_sequence = max(self.last_sequence, event.sequence)
        if out.state_name(event.task_state):
            self.state = out.state_name(event.task_state)
        if event.step_name and out.state_name(event.step_state):
            step = self.steps.setdefault(event.step_name, StepView("", 0, 0, ""))
            step.state = out.state_name(event.step_state)
            step.attempts = max(step.attempts, event.attempt)
            step.note = event.reason or step.note

    @property
    def finished(self) -> bool:
        """Whether the task reached a final state."""
        return self.state in FINAL_TASK_STATES

    def render(self) -> Group:
        """The live view: a title line and the steps table."""
        from rich.console import Group

        done = sum(step.state in _DONE_STEPS for step in self.steps.values())
        progress = f"{done}/{len(self.steps)} steps done"
        title = f"[bold]{self.task_id}[/]  {self.title}  {out.styled_state(self.state)}  {progress}"
        rows = [
            [
                name,
                out.styled_state(step.state),
                f"{step.attempts}/{step.max_attempts or '?'}",
                step.step_handler,
                step.note or "",
            ]
            for name, step in self.steps.items()
        ]
        return Group(title, out.table(None, ["step", "state", "attempts", "step handler", "note"], rows))


def iterate_until_finished(view: WatchView, open_stream: Any) -> Iterator[Any]:
    """Items of `open_stream(after_sequence)`, reopened after the last seen event until the task finishes (a watch
    also ends at its deadline or when the server shuts down)."""
    while True:
        yield from open_stream(view.last_sequence)
        if view.finished:
            return
        time.sleep(0.2)  # the watch ended early (deadline, server shutdown): pick it up again
