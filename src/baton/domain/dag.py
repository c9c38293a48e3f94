"""The step DAG of a handler: validation with exact field paths, and the queries the engine asks of it.

A step's `depends_on` names the steps that must be done before it. Every function takes steps in declaration
order, and ties are broken by that order, so results are deterministic. Validation is linear in steps plus edges
and iterative (no recursion limit at the maximum size); the queries assume a valid DAG.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from baton.errors import FieldViolation

#: Most steps a handler may have.
MAX_STEPS = 500
#: Most dependencies one step may have.
MAX_DEPENDENCIES = 100
STEP_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,62}", re.ASCII)


class DagNode(Protocol):
    """Anything with a step name and the names it depends on (StepSpec, StepDefinition, GraphStep)."""

    @property
    def name(self) -> str: ...

    @property
    def depends_on(self) -> Sequence[str]: ...


@dataclass(frozen=True, slots=True)
class StepSpec:
    """The shape of one step: its name and the steps it depends on."""

    name: str
    depends_on: tuple[str, ...] = ()


def validate_dag(steps: Sequence[DagNode], field_prefix: str = "handler.steps") -> list[FieldViolation]:
    """Every problem with the step graph, each on its exact field (`handler.steps[2].depends_on[0]`).

    Finds: no steps, too many steps or dependencies, bad or duplicate names, self-dependencies, duplicate and
    unknown dependencies, and one dependency cycle, named step by step ("cycle: a -> b -> a", each step depending
    on the next) on the dependency entry that starts it.
    """
    violations: list[FieldViolation] = []
    if not steps:
        return [FieldViolation(field_prefix, "at least one step is required")]
    if len(steps) > MAX_STEPS:
        violations.append(FieldViolation(field_prefix, f"at most {MAX_STEPS} steps are allowed, got {len(steps)}"))
    index: dict[str, int] = {}
    for i, step in enumerate(steps):
        field = f"{field_prefix}[{i}].name"
        if not STEP_NAME_PATTERN.fullmatch(step.name):
            violations.append(FieldViolation(field, _bad_name(step.name)))
        elif step.name in index:
            earlier = f"{field_prefix}[{index[step.name]}]"
            violations.append(FieldViolation(field, f"duplicate step name {step.name!r}, first declared at {earlier}"))
        else:
            index[step.name] = i
    for i, step in enumerate(steps):
        field = f"{field_prefix}[{i}].depends_on"
        if len(step.depends_on) > MAX_DEPENDENCIES:
            violations.append(
                FieldViolation(
                    field, f"at most {MAX_DEPENDENCIES} dependencies are allowed, got {len(step.depends_on)}"
                )
            )
        seen: set[str] = set()
        for j, dependency in enumerate(step.depends_on):
            if dependency == step.name:
                problem = "a step cannot depend on itself"
            elif dependency in seen:
                problem = f"duplicate dependency {shorten(dependency)!r}"
            elif dependency not in index:
                problem = f"unknown step {shorten(dependency)!r}"
            else:
                problem = ""
            if problem:
                violations.append(FieldViolation(f"{field}[{j}]", problem))
            seen.add(dependency)
    cycle = _find_cycle(steps, index)
    if cycle:
        first, second = cycle[0], cycle[1]
        j = list(steps[first].depends_on).index(steps[second].name)
        names = " -> ".join(steps[k].name for k in cycle)
        violations.append(
            FieldViolation(
                f"{field_prefix}[{first}].depends_on[{j}]", f"cycle: {names} (each step depends on the next)"
            )
        )
    return violations


def _bad_name(name: str) -> str:
    return f"{shorten(name)!r} is not a valid step name: 1-63 characters of [a-z0-9_-], starting with a letter"


def shorten(text: str, limit: int = 80) -> str:
    """`text` cut to `limit` characters with an ellipsis, so that error messages stay bounded."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _find_cycle(steps: Sequence[DagNode], index: dict[str, int]) -> list[int]:
    """One dependency cycle as step indices, first step repeated at the end, rotated to start at its earliest step.

    Iterative three-colour DFS over the valid edges (known, not self) of the first step of each name.
    """
    edges = [[index[d] for d in step.depends_on if d in index and d != step.name] for step in steps]
    on_path: dict[int, int] = {}  # step index -> position on the current DFS path
    finished = [False] * len(steps)
    for root in index.values():
        if finished[root]:
            continue
        path = [root]
        cursors = [0]
        on_path[root] = 0
        while path:
            node, cursor = path[-1], cursors[-1]
            if cursor == len(edges[node]):
                finished[node] = True
                del on_path[node]
                path.pop()
                cursors.pop()
                continue
            cursors[-1] += 1
            nxt = edges[node][cursor]
            if nxt in on_path:
                cycle = path[on_path[nxt] :]
                start = cycle.index(min(cycle))
                cycle = cycle[start:] + cycle[:start]
                return [*cycle, cycle[0]]
            if not finished[nxt]:
                on_path[nxt] = len(path)
                path.append(nxt)
                cursors.append(0)
    return []


def topological_order(steps: Sequence[DagNode]) -> list[str]:
    """Step names with every dependency before its dependents; ties go in declaration order (Kahn's algorithm).

    Raises ValueError if the steps do not form a DAG.
    """
    index = {step.name: i for i, step in enumerate(steps)}
    remaining = [len(step.depends_on) for step in steps]
    followers: list[list[int]] = [[] for _ in steps]
    for i, step in enumerate(steps):
        for dependency in step.depends_on:
            if dependency not in index:
                raise ValueError(f"step {step.name!r} depends on unknown step {dependency!r}")
            followers[index[dependency]].append(i)
    heap = [i for i, count in enumerate(remaining) if count == 0]
    order: list[str] = []
    while heap:
        i = heapq.heappop(heap)
        order.append(steps[i].name)
        for follower in followers[i]:
            remaining[follower] -= 1
            if remaining[follower] == 0:
                heapq.heappush(heap, follower)
    if len(order) != len(steps):
        raise ValueError("the steps do not form a DAG")
    return order


def dependents(steps: Sequence[DagNode]) -> dict[str, list[str]]:
    """Each step name mapped to the steps that depend on it directly, in declaration order."""
    result: dict[str, list[str]] = {step.name: [] for step in steps}
    for step in steps:
        for dependency in step.depends_on:
            result[dependency].append(step.name)
    return result


def ready_after(done: Collection[str], steps: Sequence[DagNode]) -> list[str]:
    """Steps not in `done` whose dependencies are all in `done` (completed or resolved), in declaration order."""
    return [s.name for s in steps if s.name not in done and all(d in done for d in s.depends_on)]


def initially_ready(steps: Sequence[DagNode]) -> list[str]:
    """Steps with no dependencies: READY as soon as the task is created."""
    return [step.name for step in steps if not step.depends_on]


def descendants(name: str, steps: Sequence[DagNode]) -> set[str]:
    """Every step that depends on `name` directly or transitively (`name` excluded). KeyError for unknown names."""
    followers = dependents(steps)
    found: set[str] = set()
    stack = list(followers[name])
    while stack:
        step = stack.pop()
        if step not in found:
            found.add(step)
            stack.extend(followers[step])
    return found
