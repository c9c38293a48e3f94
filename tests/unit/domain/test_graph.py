"""Graph analysis: hand-made chains and diamonds, and the critical path against brute force on small DAGs."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.domain.graph import (
    DEFAULT_STEP_DURATION,
    MAX_BOTTLENECKS,
    EdgeInfo,
    GraphStep,
    GraphWeights,
    analyze_graph,
    estimated_duration,
)
from baton.domain.states import StepState, is_final

S = StepState
WEIGHTS = GraphWeights(downstream=1.0, critical_path=2.0, failures=0.5)


def step(name: str, *depends_on: str, state: StepState = S.PENDING, **fields: float | int | None) -> GraphStep:
    return GraphStep(name, depends_on, state, **fields)  # type: ignore[arg-type]


def test_a_chain() -> None:
    steps = [
        step("a", state=S.COMPLETED, duration=3.0, attempts=1),
        step("b", "a", state=S.RUNNING, duration=1.0, expected_duration=4.0, attempts=3),
        step("c", "b", expected_duration=2.0),
    ]
    analysis = analyze_graph(steps, WEIGHTS)
    assert analysis.critical_path == ("a", "b", "c")
    assert analysis.critical_path_duration == 9.0
    assert [n.downstream_count for n in analysis.nodes] == [2, 1, 0]
    # b: 1 unfinished descendant, on the critical path, 2 failed attempts.
    assert [n.impact_score for n in analysis.nodes] == [0.0, 1.0 + 2.0 + 1.0, 2.0]
    assert analysis.bottlenecks == ("b",)
    assert analysis.edges == (EdgeInfo("a", "b", True), EdgeInfo("b", "c", False))
    assert analysis.nodes[1].duration == 1.0
    assert analysis.nodes[1].attempts == 3
    assert all(n.on_critical_path for n in analysis.nodes)


def test_a_diamond_takes_the_longer_branch() -> None:
    steps = [
        step("start", expected_duration=1.0),
        step("fast", "start", expected_duration=2.0),
        step("slow", "start", expected_duration=10.0),
        step("join", "fast", "slow", expected_duration=1.0),
        step("side"),
    ]
    analysis = analyze_graph(steps, WEIGHTS)
    assert analysis.critical_path == ("start", "slow", "join")
    assert analysis.critical_path_duration == 12.0
    by_name = {n.name: n for n in analysis.nodes}
    assert by_name["start"].downstream_count == 3
    assert by_name["start"].impact_score == 3.0 + 2.0
    assert by_name["slow"].impact_score == 1.0 + 2.0
    assert by_name["fast"].impact_score == 1.0
    assert by_name["side"].impact_score == 0.0
    assert not by_name["fast"].on_critical_path
    assert analysis.bottlenecks == ("start", "slow", "fast")
    assert [(e.from_step, e.to_step) for e in analysis.edges] == [
        ("start", "fast"),
        ("start", "slow"),
        ("fast", "join"),
        ("slow", "join"),
    ]


def test_a_failed_step_is_the_bottleneck_and_finished_steps_score_zero() -> None:
    steps = [
        step("fetch", state=S.COMPLETED, duration=5.0),
        step("parse", "fetch", state=S.FAILED, attempts=3, duration=0.5),
        step("store", "parse"),
        step("notify", "store"),
        step("audit", "fetch", state=S.RESOLVED_MANUALLY),
    ]
    analysis = analyze_graph(steps, WEIGHTS)
    scores = {n.name: n.impact_score for n in analysis.nodes}
    assert scores == {"fetch": 0.0, "parse": 2 + 2 + 1.0, "store": 1 + 2, "notify": 2.0, "audit": 0.0}
    assert analysis.bottlenecks == ("parse", "store")
    assert analysis.critical_path == ("fetch", "parse", "store", "notify")


def test_ties_and_bottleneck_order_are_deterministic() -> None:
    steps = [step("b"), step("a"), step("d", "b"), step("c", "a")]
    analysis = analyze_graph(steps, WEIGHTS)
    assert analysis.critical_path == ("b", "d")  # equal lengths: the earlier-declared end wins
    assert analysis.bottlenecks == ("b", "a")  # b: 1 + 2 beats a: 1
    flat = GraphWeights(1.0, 0.0, 0.0)
    assert analyze_graph(steps, flat).bottlenecks == ("a", "b")  # equal scores: by name


def test_at_most_ten_bottlenecks() -> None:
    steps = [step(f"s{i:02}") for i in range(15)] + [step(f"t{i:02}", f"s{i:02}") for i in range(15)]
    assert len(analyze_graph(steps, WEIGHTS).bottlenecks) == MAX_BOTTLENECKS


def test_empty_graph() -> None:
    analysis = analyze_graph([], WEIGHTS)
    assert (analysis.nodes, analysis.critical_path, analysis.critical_path_duration) == ((), (), 0.0)


@pytest.mark.parametrize(
    ("graph_step", "expected"),
    [
        (step("x"), DEFAULT_STEP_DURATION),
        (step("x", expected_duration=7.0), 7.0),
        (step("x", state=S.COMPLETED, duration=3.0, expected_duration=7.0), 3.0),
        (step("x", state=S.COMPLETED, expected_duration=7.0), 7.0),
        (step("x", state=S.RUNNING, duration=9.0, expected_duration=7.0), 9.0),
        (step("x", state=S.RUNNING, duration=2.0, expected_duration=7.0), 7.0),
        (step("x", state=S.READY, duration=2.0, expected_duration=7.0), 7.0),
        (step("x", state=S.FAILED, duration=2.0), DEFAULT_STEP_DURATION),
        (step("x", expected_duration=-4.0), 0.0),
        (step("x", expected_duration=math.nan), DEFAULT_STEP_DURATION),
    ],
)
def test_estimated_duration(graph_step: GraphStep, expected: float) -> None:
    assert estimated_duration(graph_step) == expected


def test_a_wide_graph_is_fast() -> None:
    steps = [step(f"s{i}", *(f"s{j}" for j in range(max(0, i - 100), i))) for i in range(500)]
    analysis = analyze_graph(steps, WEIGHTS)
    assert analysis.nodes[0].downstream_count == 499
    assert len(analysis.critical_path) == 500


@st.composite
def small_graphs(draw: st.DrawFn) -> list[GraphStep]:
    count = draw(st.integers(min_value=1, max_value=8))
    durations = st.one_of(st.none(), st.floats(min_value=0, max_value=100))
    result = []
    for i in range(count):
        depends_on = draw(st.lists(st.integers(0, i - 1), unique=True, max_size=3)) if i else []
        result.append(
            GraphStep(
                f"s{i}",
                tuple(f"s{j}" for j in depends_on),
                draw(st.sampled_from(StepState)),
                attempts=draw(st.integers(min_value=0, max_value=5)),
                duration=draw(durations),
                expected_duration=draw(durations),
            )
        )
    order = draw(st.permutations(range(count)))
    return [result[i] for i in order]


def all_paths(steps: list[GraphStep]) -> list[list[str]]:
    """Every path following dependency edges, dependencies first."""
    followers: dict[str, list[str]] = {s.name: [] for s in steps}
    for s in steps:
        for d in s.depends_on:
            followers[d].append(s.name)
    paths: list[list[str]] = []
    stack = [[s.name] for s in steps]
    while stack:
        path = stack.pop()
        paths.append(path)
        stack.extend([*path, f] for f in followers[path[-1]])
    return paths


@settings(deadline=None)
@given(small_graphs())
def test_the_critical_path_is_a_longest_path(steps: list[GraphStep]) -> None:
    analysis = analyze_graph(steps, WEIGHTS)
    by_name = {s.name: s for s in steps}
    path = analysis.critical_path
    assert path
    assert not by_name[path[0]].depends_on
    for before, after in itertools.pairwise(path):
        assert before in by_name[after].depends_on
    length = sum(estimated_duration(by_name[name]) for name in path)
    assert analysis.critical_path_duration == pytest.approx(length)
    longest = max(sum(estimated_duration(by_name[n]) for n in p) for p in all_paths(steps))
    assert analysis.critical_path_duration == pytest.approx(longest)
    assert {n.name for n in analysis.nodes if n.on_critical_path} == set(path)


@settings(deadline=None)
@given(small_graphs(), st.floats(0, 10), st.floats(0, 10), st.floats(0, 10))
def test_scores_and_bottlenecks(steps: list[GraphStep], down: float, critical: float, failures: float) -> None:
    analysis = analyze_graph(steps, GraphWeights(down, critical, failures))
    assert analysis == analyze_graph(steps, GraphWeights(down, critical, failures))
    assert [n.name for n in analysis.nodes] == [s.name for s in steps]
    for node in analysis.nodes:
        if is_final(node.state):
            assert node.impact_score == 0.0
            assert node.name not in analysis.bottlenecks
        assert node.impact_score >= 0.0
    scores = {n.name: n.impact_score for n in analysis.nodes}
    keys = [(-scores[name], name) for name in analysis.bottlenecks]
    assert keys == sorted(keys)
    assert len(analysis.edges) == sum(len(s.depends_on) for s in steps)
