"""The step DAG: validation with exact field paths, named cycles, and the queries on random DAGs."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.domain.dag import (
    MAX_DEPENDENCIES,
    MAX_STEPS,
    StepSpec,
    dependents,
    descendants,
    initially_ready,
    ready_after,
    topological_order,
    validate_dag,
)
from baton.errors import FieldViolation

LOWER = "abcdefghijklmnopqrstuvwxyz"
NAMES = st.builds(str.__add__, st.sampled_from(LOWER), st.text(LOWER + "0123456789_-", max_size=8))


@st.composite
def dags(draw: st.DrawFn, max_steps: int = 25) -> list[StepSpec]:
    """A random DAG: edges only from later to earlier generated steps, then declared in a shuffled order."""
    count = draw(st.integers(min_value=1, max_value=max_steps))
    names = draw(st.lists(NAMES, min_size=count, max_size=count, unique=True))
    depends_on = [
        draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=5)) if i else [] for i in range(count)
    ]
    order = draw(st.permutations(range(count)))
    return [StepSpec(names[i], tuple(depends_on[i])) for i in order]


def reachable(steps: list[StepSpec], start: str) -> set[str]:
    """Brute force: every step that depends on `start`, by repeated passes."""
    found: set[str] = set()
    changed = True
    while changed:
        changed = False
        for step in steps:
            if step.name not in found and any(d == start or d in found for d in step.depends_on):
                found.add(step.name)
                changed = True
    return found


def steps_of(*specs: str) -> list[StepSpec]:
    """`"b:a,c"` is step b depending on a and c."""
    result = []
    for spec in specs:
        name, _, deps = spec.partition(":")
        result.append(StepSpec(name, tuple(d for d in deps.split(",") if d)))
    return result


@settings(deadline=None)
@given(dags())
def test_random_dags_are_valid_and_ordered(steps: list[StepSpec]) -> None:
    assert validate_dag(steps) == []
    order = topological_order(steps)
    assert sorted(order) == sorted(step.name for step in steps)
    position = {name: i for i, name in enumerate(order)}
    for step in steps:
        for dependency in step.depends_on:
            assert position[dependency] < position[step.name]


@settings(deadline=None)
@given(dags())
def test_a_topological_declaration_order_is_kept(steps: list[StepSpec]) -> None:
    ordered = topological_order(steps)
    by_name = {step.name: step for step in steps}
    assert topological_order([by_name[name] for name in ordered]) == ordered


def test_ties_go_to_the_earlier_declared_step() -> None:
    assert topological_order(steps_of("c", "a:c", "b")) == ["c", "a", "b"]
    assert topological_order(steps_of("z", "y", "x:z,y", "w")) == ["z", "y", "x", "w"]


@settings(deadline=None)
@given(dags(), st.data())
def test_a_back_edge_is_reported_as_a_real_cycle(steps: list[StepSpec], data: st.DataObject) -> None:
    candidates = [step.name for step in steps if reachable(steps, step.name)]
    if not candidates:
        steps = [*steps, StepSpec("zz-extra", (steps[0].name,))]
        candidates = [steps[0].name]
    root = data.draw(st.sampled_from(sorted(candidates)))
    below = data.draw(st.sampled_from(sorted(reachable(steps, root))))
    at = next(i for i, step in enumerate(steps) if step.name == root)
    steps[at] = StepSpec(root, (*steps[at].depends_on, below))

    violations = validate_dag(steps)
    assert len(violations) == 1
    (violation,) = violations
    assert violation.description.startswith("cycle: ")
    cycle = violation.description.removeprefix("cycle: ").split(" (")[0].split(" -> ")
    assert cycle[0] == cycle[-1]
    assert len(set(cycle[:-1])) == len(cycle) - 1 >= 2
    by_name = {step.name: step for step in steps}
    for step, dependency in itertools.pairwise(cycle):
        assert dependency in by_name[step].depends_on
    position = {step.name: i for i, step in enumerate(steps)}
    first = position[cycle[0]]
    assert first == min(position[name] for name in cycle)
    j = steps[first].depends_on.index(cycle[1])
    assert violation.field == f"handler.steps[{first}].depends_on[{j}]"
    with pytest.raises(ValueError, match="DAG"):
        topological_order(steps)


def test_cycle_message_and_field() -> None:
    steps = steps_of("a:c", "b:a", "c:b", "d")
    assert validate_dag(steps) == [
        FieldViolation("handler.steps[0].depends_on[0]", "cycle: a -> c -> b -> a (each step depends on the next)")
    ]


def test_structural_violations_name_exact_fields() -> None:
    steps = steps_of("fetch", "parse:fetch,fetch", "fetch:", "store:parse,nope,store", "Bad Name:fetch")
    assert validate_dag(steps, "handler.steps") == [
        FieldViolation("handler.steps[2].name", "duplicate step name 'fetch', first declared at handler.steps[0]"),
        FieldViolation(
            "handler.steps[4].name",
            "'Bad Name' is not a valid step name: 1-63 characters of [a-z0-9_-], starting with a letter",
        ),
        FieldViolation("handler.steps[1].depends_on[1]", "duplicate dependency 'fetch'"),
        FieldViolation("handler.steps[3].depends_on[1]", "unknown step 'nope'"),
        FieldViolation("handler.steps[3].depends_on[2]", "a step cannot depend on itself"),
    ]


def test_empty_and_prefix() -> None:
    assert validate_dag([]) == [FieldViolation("handler.steps", "at least one step is required")]
    assert validate_dag(steps_of("a:x"), "steps")[0].field == "steps[0].depends_on[0]"


@pytest.mark.parametrize("name", ["", "1a", "A", "a" * 64, "a.b", "é", "a\n"])
def test_bad_step_names(name: str) -> None:
    (violation,) = validate_dag([StepSpec(name)])
    assert violation.field == "handler.steps[0].name"


def test_long_unknown_names_are_shortened_in_messages() -> None:
    (violation,) = validate_dag(steps_of("a:" + "x" * 10_000))
    assert len(violation.description) < 120


def test_size_limits() -> None:
    too_many = [StepSpec(f"s{i}") for i in range(MAX_STEPS + 1)]
    assert validate_dag(too_many) == [FieldViolation("handler.steps", "at most 500 steps are allowed, got 501")]
    assert validate_dag(too_many[:MAX_STEPS]) == []
    deps = tuple(f"s{i}" for i in range(MAX_DEPENDENCIES + 1))
    violations = validate_dag([*too_many[: MAX_DEPENDENCIES + 1], StepSpec("last", deps)])
    assert violations == [
        FieldViolation("handler.steps[101].depends_on", "at most 100 dependencies are allowed, got 101")
    ]


def test_a_long_chain_and_a_dense_dag_are_fast_and_need_no_recursion() -> None:
    chain = [StepSpec("s0", ("s499",))] + [StepSpec(f"s{i}", (f"s{i - 1}",)) for i in range(1, MAX_STEPS)]
    (violation,) = validate_dag(chain)
    assert violation.description.count(" -> ") == MAX_STEPS
    dense = [
        StepSpec(f"s{i}", tuple(f"s{j}" for j in range(max(0, i - MAX_DEPENDENCIES), i))) for i in range(MAX_STEPS)
    ]
    started = time.perf_counter()
    assert validate_dag(dense) == []
    assert len(topological_order(dense)) == MAX_STEPS
    assert len(descendants("s0", dense)) == MAX_STEPS - 1
    assert time.perf_counter() - started < 1.0


def test_queries_on_a_diamond() -> None:
    steps = steps_of("a", "b:a", "c:a", "d:b,c", "e")
    assert initially_ready(steps) == ["a", "e"]
    assert dependents(steps) == {"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": [], "e": []}
    assert ready_after(set(), steps) == ["a", "e"]
    assert ready_after({"a"}, steps) == ["b", "c", "e"]
    assert ready_after({"a", "b", "e"}, steps) == ["c"]
    assert ready_after({"a", "b", "c", "d", "e"}, steps) == []
    assert descendants("a", steps) == {"b", "c", "d"}
    assert descendants("d", steps) == set()
    with pytest.raises(KeyError):
        descendants("missing", steps)


@settings(deadline=None)
@given(dags())
def test_descendants_match_brute_force(steps: list[StepSpec]) -> None:
    for step in steps:
        assert descendants(step.name, steps) == reachable(steps, step.name)


@settings(deadline=None)
@given(dags())
def test_running_ready_steps_in_waves_finishes_every_step(steps: list[StepSpec]) -> None:
    by_name = {step.name: step for step in steps}
    done: set[str] = set()
    wave = initially_ready(steps)
    assert wave == ready_after(done, steps)
    while wave:
        for name in wave:
            assert set(by_name[name].depends_on) <= done
        done |= set(wave)
        wave = ready_after(done, steps)
    assert done == set(by_name)
