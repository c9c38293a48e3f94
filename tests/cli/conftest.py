"""Fixtures for the CLI tests: the real server of tests/support/server.py and a `baton` runner bound to it.

`baton(...)` runs the CLI in-process (typer's CliRunner) in a thread, so the server keeps answering on the test's
event loop; `baton_process(...)` runs the real console script as a subprocess, for what only a process shows
(stderr as written, signals).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from baton.cli.app import app
from tests.support.server import ADMIN_KEY, RunningServer, server

__all__ = ["ADMIN_KEY", "ORDER_YAML", "Baton", "baton", "server", "server_env"]

BATON = str(Path(sys.executable).with_name("baton"))

ORDER_YAML = """\
namespace: shop
name: order
version: 1.0.0
description: Reserve stock, charge, ship
steps:
  - name: reserve
    step_handler: stock.reserve
  - name: charge
    step_handler: payments.charge
    depends_on: [reserve]
    retry_policy: {max_attempts: 5, initial_backoff: 1s, jitter: 1}
  - name: notify
    stepHandler: mail.notify
    dependsOn: [reserve]
  - name: ship
    step_handler: shipping.ship
    depends_on: [charge, notify]
"""


@pytest.fixture
def server_env() -> dict[str, str]:
    """No access log: the in-process CLI shares stdout and stderr with the server."""
    return {"BATON_ACCESS_LOG": "false", "BATON_LOG_LEVEL": "error"}


@dataclass
class Baton:
    """Runs `baton` against the test server with its own config directory (and the admin key by default)."""

    target: str
    home: Path
    env: dict[str, str | None] = field(default_factory=dict)

    def environment(self, api_key: str | None) -> dict[str, str | None]:
        return {
            "BATON_TARGET": self.target,
            "BATON_API_KEY": api_key,
            "XDG_CONFIG_HOME": str(self.home),
            "COLUMNS": "200",
            **self.env,
        }

    async def __call__(self, *args: str, input: str | None = None, api_key: str | None = ADMIN_KEY) -> Result:
        runner = CliRunner()
        result = await asyncio.to_thread(
            runner.invoke, app, list(args), input=input, env=self.environment(api_key), catch_exceptions=True
        )
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"baton {' '.join(args)} raised {result.exception!r}") from result.exception
        assert "Traceback" not in result.stderr
        return result

    async def json(self, *args: str, api_key: str | None = ADMIN_KEY) -> Any:
        result = await self(*args, "-o", "json", api_key=api_key)
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)

    async def process(
        self, *args: str, input: str | None = None, api_key: str | None = ADMIN_KEY, cwd: Path | None = None
    ) -> tuple[int, str, str]:
        """Run the console script; (exit code, stdout, stderr)."""
        env = {**os.environ, **{k: v for k, v in self.environment(api_key).items() if v is not None}}
        if api_key is None:
            env.pop("BATON_API_KEY", None)
        proc = await asyncio.create_subprocess_exec(
            BATON,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=cwd,
        )
        out, err = await proc.communicate(input.encode() if input else None)
        assert proc.returncode is not None
        assert "Traceback" not in err.decode()
        return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def baton(server: RunningServer, tmp_path: Path) -> Baton:
    """The CLI bound to the test server."""
    return Baton(server.target, tmp_path / "config")
