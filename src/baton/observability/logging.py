"""Structured logging with structlog: JSON lines by default, readable console output on request.

Standard-library loggers (grpc, sqlalchemy, alembic) go through the same renderer so every line has one format.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import weakref
from typing import Any, TextIO

if "structlog" not in sys.modules and "rich" not in sys.modules:
    # structlog imports rich when it is installed (typer brings it) to offer rich tracebacks, which Baton never
    # uses: tracebacks are plain on the console (rich shows local variables, which hold secrets) and dicts in
    # JSON. Hiding rich while structlog loads saves about 45 ms of the server's start-up; rich imports normally
    # afterwards.
    sys.modules["rich"] = None  # type: ignore[assignment]
    try:
        import structlog
    finally:
        del sys.modules["rich"]
import structlog

from baton.observability.context import add_call_context

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


_access: dict[str, Any] = {"format": "json", "level": logging.INFO, "stream": None}


def configure_logging(fmt: str = "json", level: str = "info", stream: TextIO | None = None) -> None:
    """Route structlog and the standard library to `stream` (stderr) as JSON or console lines."""
    _access.update(format=fmt, level=_LEVELS.get(level, logging.INFO), stream=stream)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_call_context,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Any
    if fmt == "console":
        # Plain tracebacks: rich's show local variables, and locals hold keys, tokens and passwords.
        renderer = structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    else:
        shared.append(
            structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False))
        )
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))
    for noisy in ("sqlalchemy.engine", "aiosqlite", "asyncio", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger named after the module."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


class BatchedWriter:
    """A structlog output that writes rendered lines in batches: at most `interval` seconds after the first
    unwritten line, or at once when `max_pending` lines wait. One write system call per batch instead of one per
    line keeps the access log cheap under load; `flush()` runs at shutdown so no line is lost."""

    def __init__(self, stream: TextIO, interval: float = 0.1, max_pending: int = 512) -> None:
        self._stream = stream
        self._interval = interval
        self._max_pending = max_pending
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        _writers.add(self)

    def msg(self, message: str) -> None:
        """Queue one rendered line."""
        self._lines.append(message)
        if len(self._lines) >= self._max_pending:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(self._interval, self.flush)

    log = debug = info = warning = warn = error = critical = exception = fatal = msg

    def flush(self) -> None:
        """Write every queued line now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lines:
            text = "\n".join(self._lines) + "\n"
            self._lines.clear()
            self._stream.write(text)
            self._stream.flush()


_writers: weakref.WeakSet[BatchedWriter] = weakref.WeakSet()


def flush_logs() -> None:
    """Write out every batched log line (called on shutdown)."""
    for writer in list(_writers):
        writer.flush()


class AccessLog:
    """The one-line-per-RPC access log: structlog's timestamper and renderer applied directly to the event.

    It runs on every call, so it skips the bound-logger machinery (context copies, level dispatch) and the
    standard library (LogRecord, caller lookup, formatter), and batches its writes; the format and the level are
    those given to configure_logging.
    """

    def __init__(self, name: str = "baton.access") -> None:
        self.min_level: int = _access["level"]
        self._name = name
        self._stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
        self._render: Any = (
            structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
            if _access["format"] == "console"
            else structlog.processors.JSONRenderer()
        )
        self._out = BatchedWriter(_access["stream"] or sys.stderr)

    def write(self, level: int, event: str, fields: dict[str, Any]) -> None:
        """Render and queue one line at `level` (dropped below the configured level)."""
        if level < self.min_level:
            return
        fields["event"] = event
        fields["level"] = _LEVEL_NAMES.get(level, "info")
        fields["logger"] = self._name
        self._out.msg(self._render(None, "", self._stamp(None, "", fields)))


_LEVEL_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning", logging.ERROR: "error"}
