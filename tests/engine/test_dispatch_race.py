"""Many workers racing on one server, on SQLite and on PostgreSQL, over random DAGs and failure patterns.

Hypothesis draws a handler (3-8 steps, each depending on some earlier ones, retry policies of 1-3 attempts with
millisecond backoffs) and, for every task and every attempt of every step, what the worker does with it:
complete, fail retryably, fail non-retryably (by the flag, or by an error type the policy lists), or go silent
so that the lease expires (a 1 s lease timeout, the shortest the server accepts, on steps where that happens).
Concurrent workers, each on its own channel, poll several leases at a time and report outcomes in batches.

Checked afterwards, against what the workers saw and against the server's own event log (WatchTask replay):

- every (step, attempt) and every (step, fencing token) was leased exactly once; attempts run 1..n with rising
  tokens; none lost: each step got exactly the attempts the pattern implies, and ended in the state it implies;
- no step was leased before all its dependencies completed: the lease carries the result of every dependency as
  the accepted completion sent it, and in the event log every dependency's COMPLETED precedes the step's RUNNING;
- every task ends as the documented rule says (FAILED when a step fails for good, its dependents never ready,
  independent steps still run; COMPLETED otherwise);
- an expired lease is a failed attempt (retried, or failing the step on the last attempt) recorded by the
  sweeper, and the silent worker's late Heartbeat, CompleteStep and FailStep are refused (FAILED_PRECONDITION).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import grpc
import hypothesis
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from baton.v1 import common_pb2, handlers_pb2, tasks_pb2, workers_pb2
from tests.engine.helpers import (
    FAILED_PRECONDITION,
    as_dict,
    event_log,
    get_task,
    ref,
    register,
    seconds,
    struct,
    task_stub,
    worker_stub,
)
from tests.support.server import ADMIN_KEY, RunningServer

pytestmark = pytest.mark.slow

ADMIN = (("x-api-key", ADMIN_KEY),)
COMPLETE, RETRY, FATAL, FATAL_TYPE, SILENT = "complete", "retry", "fatal", "fatal-type", "silent"
#: Error types the workers report, by what they do.
ERROR_TYPES = {RETRY: "Transient", FATAL: "Broken", FATAL_TYPE: "Fatal", SILENT: "LeaseExpired"}
#: At most this many silent attempts in one example: each costs a lease timeout (1 s) of wall time.
MAX_SILENT = 2
#: Lease timeout of steps that never go silent: long enough that no busy moment expires them.
LONG_LEASE = 30.0
SHORT_LEASE = 1.0
#: The longest one example may take to finish all its tasks.
EXAMPLE_DEADLINE = 45.0

S = common_pb2
_namespaces = itertools.count(1)


@dataclass(frozen=True)
class StepSpec:
    name: str
    depends_on: tuple[str, ...]
    max_attempts: int
    step_handler: str


@dataclass(frozen=True)
class Scenario:
    steps: tuple[StepSpec, ...]
    #: Per task, per step name, what the worker does with attempt 1, 2, … (as long as max_attempts).
    patterns: tuple[dict[str, tuple[str, ...]], ...]
    workers: int
    max_steps: int
    initial_backoff: float
    jitter: float

    def silent_steps(self) -> set[str]:
        return {name for pattern in self.patterns for name, plan in pattern.items() if SILENT in plan}


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    count = draw(st.integers(3, 8))
    steps = []
    for i in range(count):
        depends = sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else []
        steps.append(
            StepSpec(
                name=f"s{i}",
                depends_on=tuple(f"s{d}" for d in depends),
                max_attempts=draw(st.integers(1, 3)),
                step_handler=f"race.h{i % 2}",
            )
        )
    # A "recovering" task's steps fail only retryably (or go silent) and succeed on their last attempt at the
    # latest, so it COMPLETES; a "noisy" task's steps may also fail for good.
    noisy = st.sampled_from([COMPLETE] * 6 + [RETRY, RETRY, FATAL, FATAL_TYPE, SILENT])
    recovering = st.sampled_from([COMPLETE, COMPLETE, RETRY, SILENT])
    silent_left = MAX_SILENT
    patterns = []
    for _task in range(draw(st.integers(2, 6))):
        recovers = draw(st.booleans())
        pattern = {}
        for step in steps:
            plan = []
            drawn = draw(
                st.lists(recovering if recovers else noisy, min_size=step.max_attempts, max_size=step.max_attempts)
            )
            for attempt, what in enumerate(drawn, 1):
                if recovers and attempt == step.max_attempts:
                    what = COMPLETE
                if what == SILENT:
                    if silent_left == 0:
                        what = RETRY
                    silent_left -= what == SILENT
                plan.append(what)
            pattern[step.name] = tuple(plan)
        patterns.append(pattern)
    return Scenario(
        steps=tuple(steps),
        patterns=tuple(patterns),
        workers=draw(st.integers(2, 5)),
        max_steps=draw(st.integers(2, 4)),
        initial_backoff=draw(st.sampled_from([0.005, 0.02, 0.05])),
        jitter=draw(st.sampled_from([0.0, 0.5, 1.0])),
    )


@dataclass(frozen=True)
class Expected:
    """What a pattern implies for one step: its final state, the attempts it gets, the error type of a failure."""

    state: int
    attempts: int
    error_type: str = ""


def expected_steps(steps: tuple[StepSpec, ...], pattern: dict[str, tuple[str, ...]]) -> dict[str, Expected]:
    result: dict[str, Expected] = {}
    for step in steps:  # dependencies come earlier
        if any(result[d].state != S.STEP_STATE_COMPLETED for d in step.depends_on):
            result[step.name] = Expected(S.STEP_STATE_PENDING, 0)
            continue
        for attempt, what in enumerate(pattern[step.name], 1):
            if what == COMPLETE:
                result[step.name] = Expected(S.STEP_STATE_COMPLETED, attempt)
                break
            if what in (FATAL, FATAL_TYPE) or attempt == step.max_attempts:
                result[step.name] = Expected(S.STEP_STATE_FAILED, attempt, ERROR_TYPES[what])
                break
    return result


@dataclass(frozen=True)
class Leased:
    lease: workers_pb2.Lease
    worker: str
    received: float


@dataclass
class Record:
    """What the workers saw."""

    leases: list[Leased] = field(default_factory=list)
    #: (task_id, step_name) → the result of the completion the server accepted.
    completed: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: Problems seen by workers while running (unexpected outcome codes, attempts beyond the pattern).
    problems: list[str] = field(default_factory=list)
    #: (step_id, attempt, rpc) → the code a silent worker's late call got.
    stale_codes: dict[tuple[str, int, str], int] = field(default_factory=dict)
    stale_checks: list[asyncio.Task[None]] = field(default_factory=list)


def plan_of(scenario: Scenario, task_index: dict[str, int], lease: workers_pb2.Lease) -> str:
    plan = scenario.patterns[task_index[lease.task_id]][lease.step_name]
    return plan[lease.attempt - 1] if 1 <= lease.attempt <= len(plan) else COMPLETE


async def run_worker(
    running: RunningServer,
    namespace: str,
    name: str,
    handlers: list[str],
    scenario: Scenario,
    task_index: dict[str, int],
    record: Record,
    stop: asyncio.Event,
) -> None:
    """Poll, then answer every lease as the pattern says: completions in one call, failures in another."""
    async with grpc.aio.insecure_channel(running.target) as channel:
        stub = worker_stub(channel)
        while not stop.is_set():
            request = workers_pb2.PollStepsRequest(
                namespace=namespace,
                step_handlers=handlers,
                worker_id=name,
                max_steps=scenario.max_steps,
                max_wait=seconds(0.2),
            )
            response = await stub.PollSteps(request, metadata=ADMIN, timeout=10)
            received = time.monotonic()
            completions, failures, expected_states = [], [], {}
            granted = {lease.step_id: lease for lease in response.leases}
            for lease in response.leases:
                record.leases.append(Leased(lease, name, received))
                if not 1 <= lease.attempt <= lease.max_attempts:
                    record.problems.append(f"{lease.step_name}: attempt {lease.attempt} of {lease.max_attempts}")
                what = plan_of(scenario, task_index, lease)
                last = lease.attempt >= lease.max_attempts
                if what == COMPLETE:
                    result = {"step": lease.step_name, "attempt": lease.attempt, "token": lease.fencing_token}
                    completions.append(workers_pb2.StepCompletion(lease=ref(lease), result=struct(result, by=name)))
                    expected_states[lease.step_id] = S.STEP_STATE_COMPLETED
                elif what == SILENT:
                    check = asyncio.create_task(stale_worker(running, lease, name, record))
                    record.stale_checks.append(check)
                else:
                    failures.append(
                        workers_pb2.StepFailure(
                            lease=ref(lease),
                            error_type=ERROR_TYPES[what],
                            error_message=f"{what} at attempt {lease.attempt}",
                            retryable=what != FATAL,
                        )
                    )
                    retried = what == RETRY and not last
                    expected_states[lease.step_id] = S.STEP_STATE_READY if retried else S.STEP_STATE_FAILED
            random.shuffle(completions)  # outcome calls answer each lease on its own, in request order
            if completions:
                done = await stub.CompleteStep(
                    workers_pb2.CompleteStepRequest(worker_id=name, completions=completions), metadata=ADMIN, timeout=10
                )
                for completion, outcome in zip(completions, done.outcomes, strict=True):
                    check_outcome(record, outcome, expected_states)
                    if outcome.code == 0:
                        lease = granted[completion.lease.step_id]
                        record.completed[(lease.task_id, lease.step_name)] = as_dict(completion.result)
            if failures:
                failed = await stub.FailStep(
                    workers_pb2.FailStepRequest(worker_id=name, failures=failures), metadata=ADMIN, timeout=10
                )
                for outcome in failed.outcomes:
                    check_outcome(record, outcome, expected_states)


def check_outcome(record: Record, outcome: workers_pb2.LeaseOutcome, expected_states: dict[str, int]) -> None:
    expected = expected_states[outcome.step_id]
    if (outcome.code, outcome.step_state) != (0, expected):
        record.problems.append(
            f"step {outcome.step_id}: outcome code {outcome.code} state {S.StepState.Name(outcome.step_state)}, "
            f"expected 0 {S.StepState.Name(expected)} ({outcome.message})"
        )


async def stale_worker(running: RunningServer, lease: workers_pb2.Lease, name: str, record: Record) -> None:
    """A worker that went silent: once the server has moved on from its attempt, it wakes up and reports."""
    key = (lease.step_id, lease.attempt)
    deadline = time.monotonic() + 20
    async with grpc.aio.insecure_channel(running.target) as channel:
        while True:
            task = await get_task(channel, ADMIN, lease.task_id)
            step = next(s for s in task.steps if s.id == lease.step_id)
            if not (step.state == S.STEP_STATE_RUNNING and step.attempts == lease.attempt):
                break
            if time.monotonic() > deadline:
                record.problems.append(f"lease of {lease.step_name} attempt {lease.attempt} never expired")
                return
            await asyncio.sleep(0.1)
        stub = worker_stub(channel)
        beat = await stub.Heartbeat(
            workers_pb2.HeartbeatRequest(worker_id=name, leases=[ref(lease)]), metadata=ADMIN, timeout=10
        )
        record.stale_codes[(*key, "Heartbeat")] = beat.outcomes[0].code
        late = workers_pb2.StepCompletion(lease=ref(lease), result=struct(late=True))
        done = await stub.CompleteStep(
            workers_pb2.CompleteStepRequest(worker_id=name, completions=[late]), metadata=ADMIN, timeout=10
        )
        record.stale_codes[(*key, "CompleteStep")] = done.outcomes[0].code
        failure = workers_pb2.StepFailure(lease=ref(lease), error_type="Late", retryable=False)
        failed = await stub.FailStep(
            workers_pb2.FailStepRequest(worker_id=name, failures=[failure]), metadata=ADMIN, timeout=10
        )
        record.stale_codes[(*key, "FailStep")] = failed.outcomes[0].code


def quiescent(task: tasks_pb2.Task) -> bool:
    """Whether nothing more can happen to a task: every step completed or failed, or pending behind a failure."""
    by_name = {step.name: step for step in task.steps}
    blocked: set[str] = set()
    for step in task.steps:  # in handler order: dependencies first
        if step.state in (S.STEP_STATE_COMPLETED, S.STEP_STATE_FAILED):
            continue
        stuck = any(by_name[d].state == S.STEP_STATE_FAILED or d in blocked for d in step.depends_on)
        if step.state != S.STEP_STATE_PENDING or not stuck:
            return False
        blocked.add(step.name)
    return True


async def run_scenario(running: RunningServer, scenario: Scenario) -> None:
    namespace = f"race-{next(_namespaces)}"
    silent = scenario.silent_steps()
    templates = [
        handlers_pb2.StepTemplate(
            name=step.name,
            depends_on=step.depends_on,
            step_handler=step.step_handler,
            retry_policy=handlers_pb2.RetryPolicy(
                max_attempts=step.max_attempts,
                initial_backoff=seconds(scenario.initial_backoff),
                backoff_coefficient=2.0,
                max_backoff=seconds(0.1),
                jitter=scenario.jitter,
                non_retryable_error_types=["Fatal"],
            ),
            lease_timeout=seconds(SHORT_LEASE if step.name in silent else LONG_LEASE),
        )
        for step in scenario.steps
    ]
    await register(running.channel, ADMIN, namespace, "dag", templates)
    tasks = task_stub(running.channel)
    created = [
        await tasks.CreateTask(
            tasks_pb2.CreateTaskRequest(namespace=namespace, handler_name="dag", context=struct(index=i)),
            metadata=ADMIN,
            timeout=10,
        )
        for i in range(len(scenario.patterns))
    ]
    task_index = {task.id: i for i, task in enumerate(created)}
    record, stop = Record(), asyncio.Event()
    handler_sets = [["race.h0"]] + [["race.h0", "race.h1"]] * (scenario.workers - 1)
    workers = [
        asyncio.create_task(
            run_worker(running, namespace, f"w{i}", handler_sets[i], scenario, task_index, record, stop)
        )
        for i in range(scenario.workers)
    ]
    try:
        deadline = time.monotonic() + EXAMPLE_DEADLINE
        while True:
            final = [await get_task(running.channel, ADMIN, task.id) for task in created]
            if all(quiescent(task) for task in final) and all(c.done() for c in record.stale_checks):
                break
            failed_workers = [w for w in workers if w.done()]
            if failed_workers:
                await failed_workers[0]  # a worker only ends early by raising
            assert time.monotonic() < deadline, f"tasks not finished in {EXAMPLE_DEADLINE}s: {final}"
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        results = await asyncio.gather(*workers, *record.stale_checks, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    await asyncio.sleep(0.3)  # nothing may happen after quiescence: a stray lease would show below
    final = [await get_task(running.channel, ADMIN, task.id) for task in created]
    verify(scenario, created, final, record, [await event_log(running.channel, ADMIN, t.id) for t in created])
    # Shown by --hypothesis-show-statistics: what the examples exercised.
    hypothesis.event(f"silent attempts: {len(record.stale_codes) // 3}")
    hypothesis.event(f"tasks failed: {sum(task.state == S.TASK_STATE_FAILED for task in final)} of {len(final)}")
    hypothesis.event(f"several leases in one poll: {max(Counter(x.received for x in record.leases).values()) > 1}")


def verify(
    scenario: Scenario,
    created: list[tasks_pb2.Task],
    final: list[tasks_pb2.Task],
    record: Record,
    logs: list[list[tasks_pb2.TaskEvent]],
) -> None:
    assert record.problems == []
    specs = {step.name: step for step in scenario.steps}

    # Every (step, token) and (step, attempt) leased once; attempts 1..n with rising tokens.
    tokens = Counter((x.lease.step_id, x.lease.fencing_token) for x in record.leases)
    attempts = Counter((x.lease.step_id, x.lease.attempt) for x in record.leases)
    assert [k for k, n in tokens.items() if n > 1] == []
    assert [k for k, n in attempts.items() if n > 1] == []
    by_step: dict[str, list[workers_pb2.Lease]] = defaultdict(list)
    for leased in record.leases:
        by_step[leased.lease.step_id].append(leased.lease)

    for index, (task, events) in enumerate(zip(final, logs, strict=True)):
        pattern = scenario.patterns[index]
        expected = expected_steps(scenario.steps, pattern)
        failed = any(e.state == S.STEP_STATE_FAILED for e in expected.values())
        assert task.state == (S.TASK_STATE_FAILED if failed else S.TASK_STATE_COMPLETED), (pattern, task)
        completed_at: dict[str, int] = {}  # step → sequence of its COMPLETED event
        running_events: dict[str, list[int]] = defaultdict(list)
        for event in events:
            if not event.step_name:
                continue
            if event.step_state == S.STEP_STATE_COMPLETED:
                assert event.step_name not in completed_at, f"{event.step_name} completed twice"
                completed_at[event.step_name] = event.sequence
            if event.step_state == S.STEP_STATE_RUNNING:
                running_events[event.step_name].append(event.attempt)
                for dependency in specs[event.step_name].depends_on:
                    assert dependency in completed_at, (
                        f"{event.step_name} attempt {event.attempt} started (event {event.sequence}) before its "
                        f"dependency {dependency} completed"
                    )
        for step in task.steps:
            spec, want = specs[step.name], expected[step.name]
            plan = pattern[step.name]
            leases = sorted(by_step[step.id], key=lambda lease: lease.attempt)
            context = (step.name, plan, want, [(x.attempt, x.fencing_token) for x in leases])
            assert (step.state, step.attempts) == (want.state, want.attempts), context
            assert [x.attempt for x in leases] == list(range(1, want.attempts + 1)), context
            assert running_events[step.name] == list(range(1, want.attempts + 1)), context
            assert [x.fencing_token for x in leases] == sorted({x.fencing_token for x in leases}), context
            for lease in leases:
                assert (lease.task_id, lease.max_attempts, lease.step_handler) == (
                    task.id,
                    spec.max_attempts,
                    spec.step_handler,
                )
                assert lease.context == created[index].context
                results = {name: as_dict(value) for name, value in lease.dependency_results.items()}
                assert results == {d: record.completed[(task.id, d)] for d in spec.depends_on}, context
            if want.state == S.STEP_STATE_COMPLETED:
                assert as_dict(step.result) == record.completed[(task.id, step.name)], context
                assert step.result["attempt"] == want.attempts
            else:
                assert (task.id, step.name) not in record.completed
            if want.state == S.STEP_STATE_FAILED:
                assert (step.last_error.error_type, step.last_error.attempt) == (want.error_type, want.attempts)
            # An expired lease is a failed attempt, ended by the sweeper: retried, or the step fails on the last.
            for attempt, what in enumerate(plan[: want.attempts], 1):
                if what != SILENT:
                    continue
                [ended] = [
                    e
                    for e in events
                    if e.step_name == step.name
                    and e.attempt == attempt
                    and e.previous_step_state == S.STEP_STATE_RUNNING
                ]
                after = S.STEP_STATE_FAILED if attempt == spec.max_attempts else S.STEP_STATE_READY
                assert (ended.step_state, ended.actor) == (after, "lease-expiry"), ended
                for rpc in ("Heartbeat", "CompleteStep", "FailStep"):
                    assert record.stale_codes[(step.id, attempt, rpc)] == FAILED_PRECONDITION, (rpc, context)
        task_events = [e.task_state for e in events if not e.step_name]
        assert task_events[-1] == task.state
        assert task_events.count(S.TASK_STATE_COMPLETED) == (0 if failed else 1)


@settings(
    max_examples=10,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no explain phase: it reruns slow examples
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
async def test_racing_workers_lease_every_attempt_once(any_server: RunningServer, scenario: Scenario) -> None:
    await run_scenario(any_server, scenario)
