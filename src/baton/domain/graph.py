"""Analysis of a task's step graph for GetTaskGraph: edges, critical path, impact scores and bottlenecks.

The critical path is the longest path through the DAG by estimated step duration (`estimated_duration`).
A step's impact score measures the unfinished work it holds up; bottlenecks are the unfinished steps that block
other unfinished steps, worst first. Everything is deterministic: ties go to the earlier-declared step.
Descendant sets are bitsets over the steps, so the analysis stays fast at the maximum handler size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from baton.domain.dag import topological_order
from baton.domain.states import DONE_STATES, StepState, is_final

#: Estimated seconds of a step whose duration is not known.
DEFAULT_STEP_DURATION = 1.0
#: Most bottleneck steps reported.
MAX_BOTTLENECKS = 10


@dataclass(frozen=True, slots=True)
class GraphStep:
    """One step of a task as the analysis sees it.

    `duration` is the run time of the current attempt so far, or of the last finished attempt; `expected_duration`
    an estimate of one attempt (e.g. from past runs). Either may be unknown.
    """

    name: str
    depends_on: tuple[str, ...]
    state: StepState
    attempts: int = 0
    duration: float | None = None
    expected_duration: float | None = None


@dataclass(frozen=True, slots=True)
class GraphWeights:
    """Impact-score weights (EngineConfig.graph_weight_*)."""

    downstream: float
    critical_path: float
    failures: float


@dataclass(frozen=True, slots=True)
class NodeAnalysis:
    """A step with its analysis: transitive dependents, impact score, whether it is on the critical path."""

    name: str
    state: StepState
    downstream_count: int
    impact_score: float
    on_critical_path: bool
    duration: float | None
    attempts: int


@dataclass(frozen=True, slots=True)
class EdgeInfo:
    """A dependency, from the step depended on to the dependent; satisfied once the former is done."""

    from_step: str
    to_step: str
    satisfied: bool


@dataclass(frozen=True, slots=True)
class GraphAnalysis:
    """The analysed graph: nodes and edges in declaration order, critical path first to last, worst bottleneck first."""

    nodes: tuple[NodeAnalysis, ...]
    edges: tuple[EdgeInfo, ...]
    critical_path: tuple[str, ...]
    critical_path_duration: float
    bottlenecks: tuple[str, ...]


def _seconds(value: float | None) -> float | None:
    return max(value, 0.0) if value is not None and math.isfinite(value) else None


def estimated_duration(step: GraphStep) -> float:
    """Seconds a step counts for on the critical path.

    Finished steps (COMPLETED, RESOLVED_MANUALLY, CANCELLED) count their actual `duration`; a RUNNING step
    the longer of its run time so far and its expected duration; every other step (and a finished one whose
    duration is unknown) its `expected_duration`, or DEFAULT_STEP_DURATION (1 s) when that is unknown too.
    """
    actual, expected = _seconds(step.duration), _seconds(step.expected_duration)
    estimate = DEFAULT_STEP_DURATION if expected is None else expected
    if actual is None:
        return estimate
    if is_final(step.state):
        return actual
    if step.state is StepState.RUNNING:
        return max(actual, estimate)
    return estimate


def analyze_graph(steps: Sequence[GraphStep], weights: GraphWeights) -> GraphAnalysis:
    """Analyse a task's steps, given in declaration order and forming a DAG (ValueError otherwise).

    - downstream_count: steps that depend on the step directly or transitively;
    - impact_score: 0 for finished steps; else `downstream` × unfinished descendants + `critical_path` × (1 if on
      the critical path) + `failures` × (attempts − 1, when more than one attempt was made);
    - bottlenecks: unfinished steps blocking at least one unfinished descendant, by impact score descending then
      name, at most MAX_BOTTLENECKS.
    """
    order = _topological_indices(steps)
    position = {step.name: i for i, step in enumerate(steps)}
    requires = [[position[d] for d in step.depends_on] for step in steps]
    followers: list[list[int]] = [[] for _ in steps]
    for i, dependencies in enumerate(requires):
        for dependency in dependencies:
            followers[dependency].append(i)

    below = [0] * len(steps)  # bitset of transitive descendants
    for i in reversed(order):
        bits = 0
        for follower in followers[i]:
            bits |= below[follower] | (1 << follower)
        below[i] = bits
    unfinished = sum(1 << i for i, step in enumerate(steps) if not is_final(step.state))

    path, path_duration = _critical_path(steps, order, requires)
    on_path = set(path)
    scores = [
        _impact(step, (below[i] & unfinished).bit_count(), i in on_path, weights) if unfinished >> i & 1 else 0.0
        for i, step in enumerate(steps)
    ]
    blocking = [i for i in range(len(steps)) if unfinished >> i & 1 and below[i] & unfinished]
    blocking.sort(key=lambda i: (-scores[i], steps[i].name))
    nodes = tuple(
        NodeAnalysis(
            name=step.name,
            state=step.state,
            downstream_count=below[i].bit_count(),
            impact_score=scores[i],
            on_critical_path=i in on_path,
            duration=step.duration,
            attempts=step.attempts,
        )
        for i, step in enumerate(steps)
    )
    edges = tuple(
        EdgeInfo(steps[d].name, step.name, steps[d].state in DONE_STATES)
        for step, dependencies in zip(steps, requires, strict=True)
        for d in dependencies
    )
    return GraphAnalysis(
        nodes=nodes,
        edges=edges,
        critical_path=tuple(steps[i].name for i in path),
        critical_path_duration=path_duration,
        bottlenecks=tuple(steps[i].name for i in blocking[:MAX_BOTTLENECKS]),
    )


def _topological_indices(steps: Sequence[GraphStep]) -> list[int]:
    position = {step.name: i for i, step in enumerate(steps)}
    return [position[name] for name in topological_order(steps)]


def _impact(step: GraphStep, unfinished_below: int, critical: bool, weights: GraphWeights) -> float:
    return (
        weights.downstream * unfinished_below
        + (weights.critical_path if critical else 0.0)
        + weights.failures * max(step.attempts - 1, 0)
    )


def _critical_path(steps: Sequence[GraphStep], order: list[int], requires: list[list[int]]) -> tuple[list[int], float]:
    """The longest path by estimated duration (dependencies first) and its length; ties go to earlier steps."""
    if not steps:
        return [], 0.0
    longest = [0.0] * len(steps)  # longest path ending at each step, the step included
    previous = [-1] * len(steps)
    for i in order:
        best = -1
        for d in requires[i]:
            if best < 0 or longest[d] > longest[best] or (longest[d] == longest[best] and d < best):
                best = d
        previous[i] = best
        longest[i] = estimated_duration(steps[i]) + (longest[best] if best >= 0 else 0.0)
    end = min(range(len(steps)), key=lambda i: (-longest[i], i))
    path = [end]
    while previous[path[-1]] >= 0:
        path.append(previous[path[-1]])
    path.reverse()
    return path, longest[end]
