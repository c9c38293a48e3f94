"""Structured logging with structlog: JSON lines by default, readable console output on request.

Standard-library loggers (grpc, sqlalchemy, alembic) go through the same renderer so every line has one format.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import weakref
from collections.abc import Callable
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
import orjson
import structlog

from baton.observability.context import add_call_context

_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS


def json_dumps(event: dict[str, Any], **kwargs: Any) -> str:
    """structlog's JSON serializer: orjson (compact, one line), with the standard library as the fallback for
    what orjson refuses (integers beyond 64 bits). The access log renders one of these per RPC; orjson takes a
    twentieth of the time of `json.dumps` for its ten fields."""
    default = kwargs.get("default")
    try:
        return orjson.dumps(event, default=default, option=_ORJSON_OPTIONS).decode()
    except TypeError:
        return json.dumps(event, default=default, separators=(",", ":"))


def json_renderer() -> structlog.processors.JSONRenderer:
    """The JSON renderer of every log line."""
    return structlog.processors.JSONRenderer(serializer=json_dumps)


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
        renderer = json_renderer()
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
    """A structlog output that writes lines in batches: at most `interval` seconds after the first unwritten
    line, or at once when `max_pending` lines wait. One write system call per batch instead of one per line keeps
    the access log cheap under load; `flush()` runs at shutdown so no line is lost.

    Besides rendered lines (`msg`), it takes events still to be rendered (`defer`): `render` turns them into lines
    when the batch is written, so a call pays for a list append and the renderer runs once per batch, in a tight
    loop, off the request's path."""

    def __init__(
        self,
        stream: TextIO,
        interval: float = 0.1,
        max_pending: int = 512,
        render: Callable[[Any], str] | None = None,
    ) -> None:
        self._stream = stream
        self._interval = interval
        self._max_pending = max_pending
        self._render = render
        self._lines: list[Any] = []
        self._timer: asyncio.TimerHandle | None = None
        _writers.add(self)

    def defer(self, entry: Any) -> None:
        """Queue one event (a dict or a tuple `render` knows), rendered when its batch is written, or one line
        already rendered (a str)."""
        lines = self._lines
        lines.append(entry)
        if len(lines) >= self._max_pending:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(self._interval, self.flush)

    msg = defer  # structlog's output interface: a rendered line
    log = debug = info = warning = warn = error = critical = exception = fatal = msg

    def flush(self) -> None:
        """Write every queued line now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lines:
            entries, self._lines = self._lines, []
            render = self._render or repr
            lines = [entry if isinstance(entry, str) else render(entry) for entry in entries]
            self._stream.write("\n".join(lines) + "\n")
            self._stream.flush()


_writers: weakref.WeakSet[BatchedWriter] = weakref.WeakSet()


def flush_logs() -> None:
    """Write out every batched log line (called on shutdown)."""
    for writer in list(_writers):
        writer.flush()


#: One RPC's access line as the chain queues it (a tuple: no dict, no field names on the request's path):
#: (level, time.time(), method, code name, duration in ms, peer, principal ID or None, auth method or None,
#: request ID, trace ID or None, span ID or None, error details or None).
RpcLine = tuple[int, float, str, str, float, str, str | None, str | None, str, str | None, str | None, str | None]

_RPC_FIELDS = ("method", "code", "duration_ms", "peer", "principal", "auth", "request_id")


class AccessLog:
    """The one-line-per-RPC access log: queued as a tuple on the call's path, rendered once per batch.

    It runs on every call, so it skips the bound-logger machinery (context copies, level dispatch) and the
    standard library (LogRecord, caller lookup, formatter): a call adds a tuple to a batch, and the batch is
    rendered and written in one go. A JSON line is put together from text made once per method and code and
    once per peer, principal and auth method, so it reads exactly as structlog's JSONRenderer with `json_dumps`
    would write the same event; console lines go through structlog's ConsoleRenderer. The format and the level
    are those given to configure_logging.
    """

    def __init__(self, name: str = "baton.access") -> None:
        self.min_level: int = _access["level"]
        self._name = name
        self._heads: dict[tuple[str, str], str] = {}
        self._middles: dict[tuple[str, str | None, str | None], str] = {}
        self._tails = {  # what follows the fields, by level, up to the timestamp's text
            level: f',"event":"rpc","level":"{level_name}","logger":{_quote(name)},"timestamp":"'
            for level, level_name in _LEVEL_NAMES.items()
        }
        self._console: Any = (
            structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
            if _access["format"] == "console"
            else None
        )
        self._out = BatchedWriter(
            _access["stream"] or sys.stderr, render=self._render_json if self._console is None else self._render_console
        )
        #: Queue one RPC's line (the caller has checked `min_level`).
        self.rpc: Callable[[RpcLine], None] = self._out.defer

    def write(self, level: int, event: str, fields: dict[str, Any]) -> None:
        """Queue one line at `level` (dropped below the configured level); `fields` is not used afterwards."""
        if level < self.min_level:
            return
        fields["event"] = event
        fields["level"] = _LEVEL_NAMES.get(level, "info")
        fields["logger"] = self._name
        fields["timestamp"] = time.time()
        self._out.defer(fields)

    def _fields(self, line: RpcLine) -> dict[str, Any]:
        """The event of an RPC line, as `write` would have queued it."""
        fields: dict[str, Any] = dict(zip(_RPC_FIELDS, line[2:9], strict=True))
        if line[9] is not None:
            fields["trace_id"], fields["span_id"] = line[9], line[10]
        if line[11] is not None:
            fields["error"] = line[11]
        fields["event"] = "rpc"
        fields["level"] = _LEVEL_NAMES.get(line[0], "info")
        fields["logger"] = self._name
        fields["timestamp"] = line[1]
        return fields

    def _render_console(self, entry: dict[str, Any] | RpcLine) -> str:
        fields = entry if isinstance(entry, dict) else self._fields(entry)
        fields["timestamp"] = iso_utc(fields["timestamp"])
        line: str = self._console(None, "", fields)
        return line

    def _render_json(self, entry: dict[str, Any] | RpcLine) -> str:
        """What structlog's JSONRenderer with `json_dumps` writes, without its call in between."""
        if isinstance(entry, dict):
            entry["timestamp"] = iso_utc(entry["timestamp"])
            return json_dumps(entry)
        level, stamp, method, code, duration, peer, principal, auth, request_id, trace_id, span_id, error = entry
        # The text around the duration repeats from line to line: it is made once per method and code, and once
        # per peer, principal and auth method (both bounded). Request IDs (accepted only as [A-Za-z0-9._:-] or
        # made here), code names and trace and span IDs (hex) need no escaping; the rest is quoted by orjson.
        head = self._heads.get((method, code))
        if head is None:
            if len(self._heads) > 4096:
                self._heads.clear()
            head = self._heads[method, code] = f'{{"method":{_quote(method)},"code":"{code}","duration_ms":'
        middle = self._middles.get((peer, principal, auth))
        if middle is None:
            if len(self._middles) > 4096:  # peers' ports change with every connection
                self._middles.clear()
            middle = self._middles[peer, principal, auth] = (
                f',"peer":{_quote(peer)},"principal":{_quote(principal)},"auth":{_quote(auth)},"request_id":"'
            )
        line = f'{head}{duration!r}{middle}{request_id}"'
        if trace_id is not None:
            line += f',"trace_id":"{trace_id}","span_id":"{span_id}"'
        if error is not None:
            line += f',"error":{orjson.dumps(error).decode()}'
        tail = self._tails.get(level) or self._tails[logging.INFO]
        return f'{line}{tail}{iso_utc(stamp)}"}}'


def _quote(text: str | None) -> str:
    """`text` as a JSON string, or null."""
    return orjson.dumps(text).decode()


_second: list[Any] = [None, ""]


def iso_utc(seconds: float) -> str:
    """`seconds` since the epoch as ISO 8601 in UTC with microseconds (`2026-11-22T08:58:29.977572Z`), as
    structlog's TimeStamper(fmt="iso", utc=True) writes it; the date and time of day are formatted once a second."""
    whole = int(seconds)
    if whole != _second[0]:
        _second[0], _second[1] = whole, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(whole))
    # (seconds - whole) < 1 - 2**-52 for any time after 1970, so the microseconds stay below 1_000_000; str() of
    # the number plus a million, less its leading 1, pads them to six digits for a third of `:06d`'s cost.
    return f"{_second[1]}{str(int((seconds - whole) * 1_000_000) + 1_000_000)[1:]}Z"


_LEVEL_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning", logging.ERROR: "error"}
