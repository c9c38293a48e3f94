"""Printing results: rich tables for people, proto3 JSON for scripts, and the colours of states."""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import betterproto2
    from rich.console import Console
    from rich.table import Table

STATE_STYLES = {
    "PENDING": "dim",
    "READY": "cyan",
    "RUNNING": "bold blue",
    "COMPLETED": "green",
    "RESOLVED_MANUALLY": "green",
    "FAILED": "bold red",
    "CANCELLED": "yellow",
}


def console(*, stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr) as they are now; wide enough for IDs when not a terminal."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 160
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def to_data(message: betterproto2.Message) -> dict[str, Any]:
    """A message as proto3 JSON data (camelCase names, enum names, RFC 3339 times)."""
    data: dict[str, Any] = integral(message.to_dict())
    return data


def integral(value: Any) -> Any:
    """JSON data with whole-number floats as integers (Struct numbers are doubles: `42`, not `42.0`)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [integral(item) for item in value]
    return value


def emit_json(value: betterproto2.Message | Sequence[betterproto2.Message] | dict[str, Any]) -> None:
    """Print one message (or a list of them, or plain data) as indented JSON on stdout."""
    import betterproto2

    data: Any
    if isinstance(value, betterproto2.Message):
        data = to_data(value)
    elif isinstance(value, dict):
        data = value
    else:
        data = [to_data(item) for item in value]
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def state_name(state: Any) -> str:
    """`COMPLETED` for TaskState.COMPLETED / StepState.COMPLETED."""
    name = getattr(state, "name", None) or str(state)
    return "" if name == "UNSPECIFIED" else name


def styled_state(state: Any) -> str:
    """A state name in its colour, as rich markup."""
    name = state_name(state)
    return f"[{STATE_STYLES.get(name, 'white')}]{name or '-'}[/]"


def when(moment: datetime.datetime | None) -> str:
    """A timestamp in local time to the second, or `-`."""
    if moment is None:
        return "-"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(value: datetime.timedelta | None) -> str:
    """`1.2s`, `3m04s`, `2h05m`, or `-`."""
    if value is None:
        return "-"
    seconds = value.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> Table:
    """A rich table; columns named `id` or ending in ` id` never wrap."""
    from rich.table import Table

    grid = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        is_id = column.lower() == "id" or column.lower().endswith(" id")
        grid.add_column(column, no_wrap=is_id, overflow="fold")
    for row in rows:
        grid.add_row(*row)
    return grid


def show(*renderables: Any) -> None:
    """Print rich renderables (tables, trees, markup) on stdout."""
    out = console()
    for item in renderables:
        out.print(item)


def compact_json(value: Any, limit: int = 60) -> str:
    """Short JSON for a table cell, cut at `limit` characters."""
    if not value:
        return "-"
    text = json.dumps(integral(value), separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def emit_line(message: betterproto2.Message) -> None:
    """Print one message as a single JSON line (for streams: one line per item)."""
    sys.stdout.write(json.dumps(to_data(message), separators=(",", ":")) + "\n")
    sys.stdout.flush()
