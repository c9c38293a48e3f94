"""The AIP-160 subset ListTasks accepts: comparisons joined by AND.

Terms: `handler_name = "x"`, `state = RUNNING` (or `TASK_STATE_RUNNING`, quoted or not), `tags:"t"`, and
`create_time` compared (`>`, `>=`, `<`, `<=`) with a quoted RFC 3339 time. Anything else is INVALID_ARGUMENT on
`filter`, naming the term that could not be read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from baton.domain.dag import shorten
from baton.domain.states import TaskState
from baton.errors import FieldViolation, InvalidArgument

MAX_FILTER_LENGTH = 2048
_TOKEN = re.compile(
    r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<operator>>=|<=|!=|=|>|<|:)|(?P<word>[A-Za-z0-9_.+-]+)|(?P<bad>\S))'
)
_TIME_OPERATORS = (">", ">=", "<", "<=")


@dataclass(frozen=True, slots=True)
class TaskFilter:
    """A parsed filter: every listed condition must hold."""

    handler_names: tuple[str, ...] = ()
    states: tuple[TaskState, ...] = ()
    tags: tuple[str, ...] = ()
    create_time: tuple[tuple[str, datetime], ...] = ()


def _bad(term: str, problem: str) -> InvalidArgument:
    return InvalidArgument(
        f"filter: {problem}: {shorten(term)!r}",
        field_violations=[FieldViolation("filter", f"{problem}: {shorten(term)!r}")],
    )


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:  # only trailing whitespace is left
            break
        kind = match.lastgroup or "bad"
        value = match.group(kind)
        if kind == "bad":
            raise _bad(text[match.start(kind) :], "unexpected character")
        tokens.append((kind, value))
        position = match.end()
    return tokens


def _unquote(kind: str, value: str) -> str:
    if kind != "string":
        return value
    return re.sub(r"\\(.)", r"\1", value[1:-1])


def parse_filter(text: str) -> TaskFilter:
    """Parse a ListTasks filter ("" matches every task)."""
    if len(text) > MAX_FILTER_LENGTH:
        raise InvalidArgument(
            "filter is too long",
            field_violations=[FieldViolation("filter", f"at most {MAX_FILTER_LENGTH} characters")],
        )
    tokens = _tokens(text)
    names: list[str] = []
    states: list[TaskState] = []
    tags: list[str] = []
    times: list[tuple[str, datetime]] = []
    index = 0
    while index < len(tokens):
        term = tokens[index : index + 3]
        shown = " ".join(value for _, value in term)
        if len(term) < 3 or term[0][0] != "word" or term[1][0] != "operator" or term[2][0] == "operator":
            raise _bad(shown, "expected `field operator value`")
        (_, name), (_, operator), (kind, raw) = term
        value = _unquote(kind, raw)
        if name == "handler_name" and operator == "=":
            names.append(value)
        elif name == "state" and operator == "=":
            states.append(_state(value, shown))
        elif name == "tags" and operator == ":":
            tags.append(value)
        elif name == "create_time" and operator in _TIME_OPERATORS:
            times.append((operator, _time(value, shown)))
        else:
            raise _bad(shown, "unsupported term (use handler_name =, state =, tags:, create_time >, >=, <, <=)")
        index += 3
        if index < len(tokens):
            if tokens[index] != ("word", "AND"):
                raise _bad(tokens[index][1], "terms must be joined by AND")
            index += 1
            if index == len(tokens):
                raise _bad("AND", "a term must follow AND")
    return TaskFilter(tuple(names), tuple(states), tuple(tags), tuple(times))


def _state(value: str, term: str) -> TaskState:
    name = value.removeprefix("TASK_STATE_")
    try:
        return TaskState(name)
    except ValueError:
        raise _bad(term, "unknown task state") from None


def _time(value: str, term: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise _bad(term, 'expected an RFC 3339 time such as "2026-01-01T00:00:00Z"') from None
    if parsed.tzinfo is None:
        raise _bad(term, "the time needs an offset or Z")
    return parsed.astimezone(UTC)
