"""Helpers shared by the bench scripts: free ports, percentiles, the final JSON line."""

from __future__ import annotations

import json
import socket
import statistics
import sys
from typing import Any


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], pct: float) -> float:
    """The pct-th percentile (nearest rank) of values."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def median(values: list[float]) -> float:
    """The median."""
    return statistics.median(values)


def emit(result: dict[str, Any]) -> None:
    """Print the result as the last line: one JSON object."""
    sys.stdout.flush()
    print(json.dumps(result, sort_keys=True))
