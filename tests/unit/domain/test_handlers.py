"""Handler definitions: validation messages and paths, semantic version ordering, the definition digest."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.domain.backoff import RetryDefaults, RetryPolicy
from baton.domain.handlers import (
    HandlerDefaults,
    HandlerDefinition,
    StepDefinition,
    canonical_definition,
    definition_digest,
    parse_semver,
    require_valid_handler,
    resolve_step,
    validate_handler,
)
from baton.errors import FieldViolation, InvalidArgument

DEFAULTS = HandlerDefaults(
    retry=RetryDefaults(max_attempts=3, initial_backoff=1.0, backoff_coefficient=2.0, max_backoff=300.0),
    lease_timeout=300.0,
)
GOOD = HandlerDefinition(
    namespace="payments",
    name="charge_card",
    version="1.2.0",
    description="Charge a card and notify the customer.",
    steps=(
        StepDefinition("authorize", "payments.Authorize"),
        StepDefinition("capture", "payments:capture", ("authorize",), RetryPolicy(max_attempts=5), 60.0, 10),
        StepDefinition("notify", "Notify", ("capture",), priority=-1000, description="email"),
    ),
)


def fields(definition: HandlerDefinition) -> list[str]:
    return [v.field for v in validate_handler(definition, DEFAULTS)]


def test_a_good_definition_is_valid() -> None:
    assert validate_handler(GOOD, DEFAULTS) == []
    require_valid_handler(GOOD, DEFAULTS)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"namespace": "Payments"}, "handler.namespace"),
        ({"namespace": "pay_ments"}, "handler.namespace"),
        ({"namespace": ""}, "handler.namespace"),
        ({"namespace": "a" * 64}, "handler.namespace"),
        ({"name": "9lives"}, "handler.name"),
        ({"name": "a" * 64}, "handler.name"),
        ({"version": "1.2"}, "handler.version"),
        ({"version": "v1.2.0"}, "handler.version"),
        ({"version": "1.2.0+build.5"}, "handler.version"),
        ({"version": "2147483648.0.0"}, "handler.version"),
        ({"version": "1.0.0-" + "a" * 60}, "handler.version"),
        ({"description": "x" * 1025}, "handler.description"),
        ({"steps": ()}, "handler.steps"),
    ],
)
def test_handler_fields(change: dict[str, object], field: str) -> None:
    assert fields(replace(GOOD, **change)) == [field]  # type: ignore[arg-type]


def test_messages_say_what_is_allowed() -> None:
    violations = validate_handler(replace(GOOD, namespace="Bad", version="1.0"), DEFAULTS)
    assert violations == [
        FieldViolation(
            "handler.namespace",
            "'Bad' is not a valid namespace: 1-63 characters of [a-z0-9-], starting with a letter",
        ),
        FieldViolation(
            "handler.version",
            "'1.0' is not a semantic version: MAJOR.MINOR.PATCH with an optional -PRERELEASE, "
            "numbers at most 2147483647, at most 64 characters",
        ),
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"step_handler": ""}, "handler.steps[1].step_handler"),
        ({"step_handler": "1abc"}, "handler.steps[1].step_handler"),
        ({"step_handler": "a b"}, "handler.steps[1].step_handler"),
        ({"step_handler": "a" * 129}, "handler.steps[1].step_handler"),
        ({"lease_timeout": 0.5}, "handler.steps[1].lease_timeout"),
        ({"lease_timeout": 86_401.0}, "handler.steps[1].lease_timeout"),
        ({"lease_timeout": float("nan")}, "handler.steps[1].lease_timeout"),
        ({"priority": 1001}, "handler.steps[1].priority"),
        ({"priority": -1001}, "handler.steps[1].priority"),
        ({"description": "x" * 1025}, "handler.steps[1].description"),
        ({"retry_policy": RetryPolicy(max_attempts=0, jitter=2.0)}, "handler.steps[1].retry_policy.jitter"),
        ({"depends_on": ("ghost",)}, "handler.steps[1].depends_on[0]"),
        ({"depends_on": ("capture",)}, "handler.steps[1].depends_on[0]"),
        ({"name": "authorize"}, "handler.steps[1].name"),
    ],
)
def test_step_fields(change: dict[str, object], field: str) -> None:
    steps = list(GOOD.steps)
    steps[1] = replace(steps[1], **change)  # type: ignore[arg-type]
    assert field in fields(replace(GOOD, steps=tuple(steps)))


def test_unset_lease_timeout_and_edge_values_are_valid() -> None:
    steps = list(GOOD.steps)
    for value in (None, 0.0, 1.0, 86_400.0):
        steps[0] = replace(steps[0], lease_timeout=value)
        assert fields(replace(GOOD, steps=tuple(steps))) == []


def test_a_cycle_is_named() -> None:
    steps = (StepDefinition("a", "H", ("b",)), StepDefinition("b", "H", ("a",)))
    assert validate_handler(replace(GOOD, steps=steps), DEFAULTS) == [
        FieldViolation("handler.steps[0].depends_on[0]", "cycle: a -> b -> a (each step depends on the next)")
    ]


def test_require_valid_handler_raises_every_violation() -> None:
    with pytest.raises(InvalidArgument, match=r"invalid handler definition \(2 problems\)") as raised:
        require_valid_handler(replace(GOOD, namespace="", name=""), DEFAULTS)
    assert [v.field for v in raised.value.field_violations] == ["handler.namespace", "handler.name"]


def test_semver_ordering() -> None:
    assert parse_semver("1.10.0") > parse_semver("1.9.0")
    assert parse_semver("1.0.0-rc.1") < parse_semver("1.0.0")
    ordered = [
        "0.9.9",
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.2.0",
        "1.10.0",
        "2.0.0-0",
        "2.0.0",
    ]
    assert sorted(reversed(ordered), key=parse_semver) == ordered


@pytest.mark.parametrize(
    "text", ["1", "1.0", "01.0.0", "1.00.0", "1.0.0-", "1.0.0-01", "1.0.0-a..b", "1.0.0\n", "١.0.0", "1.0.0 "]
)
def test_invalid_semver(text: str) -> None:
    with pytest.raises(ValueError, match="not a semantic version"):
        parse_semver(text)


@settings(deadline=None)
@given(st.tuples(*[st.integers(0, 10**6)] * 3), st.tuples(*[st.integers(0, 10**6)] * 3))
def test_release_order_is_numeric(a: tuple[int, int, int], b: tuple[int, int, int]) -> None:
    key_a, key_b = parse_semver("{}.{}.{}".format(*a)), parse_semver("{}.{}.{}".format(*b))
    assert (key_a < key_b) == (a < b)


def test_resolve_step_fills_defaults() -> None:
    resolved = resolve_step(GOOD.steps[0], DEFAULTS)
    assert resolved.lease_timeout == 300.0
    assert resolved.retry_policy == RetryPolicy(3, 1.0, 2.0, 300.0, 0.0, frozenset())


def test_canonical_definition() -> None:
    data = canonical_definition(GOOD, DEFAULTS)
    assert [s["name"] for s in data["steps"]] == ["authorize", "capture", "notify"]
    assert data["steps"][1]["retry_policy"]["max_attempts"] == 5
    assert data["steps"][1]["lease_timeout"] == 60.0


def test_digest_identifies_equal_definitions() -> None:
    digest = definition_digest(GOOD, DEFAULTS)
    assert len(digest) == 64
    assert int(digest, 16) >= 0
    same = HandlerDefinition(**{f: getattr(GOOD, f) for f in ("namespace", "name", "version", "description", "steps")})
    assert definition_digest(same, DEFAULTS) == digest
    explicit = list(GOOD.steps)
    explicit[0] = resolve_step(explicit[0], DEFAULTS)
    assert definition_digest(replace(GOOD, steps=tuple(explicit)), DEFAULTS) == digest


@pytest.mark.parametrize(
    "change",
    [
        {"namespace": "other"},
        {"name": "other"},
        {"version": "1.2.1"},
        {"description": ""},
        {"steps": GOOD.steps[:2]},
        {"steps": (replace(GOOD.steps[0], priority=1), *GOOD.steps[1:])},
        {"steps": (replace(GOOD.steps[0], retry_policy=RetryPolicy(jitter=0.1)), *GOOD.steps[1:])},
        {"steps": (replace(GOOD.steps[0], step_handler="Other"), *GOOD.steps[1:])},
    ],
)
def test_digest_changes_with_the_definition(change: dict[str, object]) -> None:
    assert definition_digest(replace(GOOD, **change), DEFAULTS) != definition_digest(GOOD, DEFAULTS)  # type: ignore[arg-type]


def test_digest_follows_the_server_defaults() -> None:
    other = replace(DEFAULTS, lease_timeout=120.0)
    assert definition_digest(GOOD, other) != definition_digest(GOOD, DEFAULTS)
