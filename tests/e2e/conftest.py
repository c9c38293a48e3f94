"""A real `baton serve` process for the polyglot and operator tests, with a known admin API key
(tests/support/process.py); every one started is killed after the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.process import ADMIN_API_KEY, REPO, BatonProcess, health_status, spawn_baton, wait_serving

__all__ = ["ADMIN_API_KEY", "REPO", "BatonProcess", "health_status", "wait_serving"]


@pytest.fixture
def start_baton(tmp_path: Path) -> Iterator[Callable[..., BatonProcess]]:
    """Start `baton serve` with extra BATON_* variables and wait until it is SERVING; killed after the test."""
    started: list[BatonProcess] = []

    def start(**extra: str) -> BatonProcess:
        number = len(started)
        baton = spawn_baton(tmp_path / f"baton-{number}.db", tmp_path / f"baton-{number}.log", cwd=tmp_path, **extra)
        started.append(baton)
        return baton

    try:
        yield start
    finally:
        for baton in started:
            if baton.proc.poll() is None:
                baton.proc.kill()
            baton.proc.wait(timeout=10)


@pytest.fixture
def baton(start_baton: Callable[..., BatonProcess]) -> BatonProcess:
    """One `baton serve` with default settings."""
    return start_baton()
