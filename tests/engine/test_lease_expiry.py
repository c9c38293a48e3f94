"""A worker killed mid-step (it stops heartbeating): its lease expires, another worker gets the step for the next
attempt with a higher fencing token, and everything the dead worker sends afterwards is refused. On SQLite and
PostgreSQL."""

from __future__ import annotations

import time

import grpc

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

ADMIN = (("x-api-key", ADMIN_KEY),)
NS = "leases"
S = common_pb2


async def poll(channel: grpc.aio.Channel, worker_id: str, wait: float) -> list[workers_pb2.Lease]:
    request = workers_pb2.PollStepsRequest(
        namespace=NS, step_handlers=["job.run"], worker_id=worker_id, max_steps=5, max_wait=seconds(wait)
    )
    response = await worker_stub(channel).PollSteps(request, metadata=ADMIN, timeout=wait + 5)
    return list(response.leases)


async def test_dead_worker_loses_its_lease_and_is_refused(any_server: RunningServer) -> None:
    policy = handlers_pb2.RetryPolicy(max_attempts=3, initial_backoff=seconds(0.01), max_backoff=seconds(0.01))
    await register(
        any_server.channel,
        ADMIN,
        NS,
        "job",
        [
            handlers_pb2.StepTemplate(
                name="run", step_handler="job.run", retry_policy=policy, lease_timeout=seconds(1)
            ),
            handlers_pb2.StepTemplate(name="after", step_handler="job.after", depends_on=["run"]),
        ],
    )
    task = await task_stub(any_server.channel).CreateTask(
        tasks_pb2.CreateTaskRequest(namespace=NS, handler_name="job"), metadata=ADMIN, timeout=10
    )
    async with (
        grpc.aio.insecure_channel(any_server.target) as channel_a,
        grpc.aio.insecure_channel(any_server.target) as channel_b,
    ):
        a, b = worker_stub(channel_a), worker_stub(channel_b)
        # Wall-clock time, as the server's lease expiry: a machine that was paused (its monotonic clock stopped)
        # sees the lease run out early by the monotonic clock. Taken before the claim, which starts the lease.
        started = time.time()
        [first] = await poll(channel_a, "worker-a", 2)
        assert (first.step_name, first.attempt) == ("run", 1)
        # Worker A dies: it never heartbeats. Worker B is waiting and gets the step once the lease has expired.
        [second] = await poll(channel_b, "worker-b", 10)
        waited = time.time() - started
        assert 0.8 <= waited < 5, waited
        assert (second.step_id, second.step_name, second.attempt) == (first.step_id, "run", 2)
        assert second.fencing_token > first.fencing_token
        assert second.schedule_time.ToDatetime() >= first.lease_expire_time.ToDatetime()
        leased = next(s for s in (await get_task(any_server.channel, ADMIN, task.id)).steps if s.name == "run")
        assert (leased.state, leased.attempts, leased.worker_id) == (S.STEP_STATE_RUNNING, 2, "worker-b")
        assert (leased.last_error.error_type, leased.last_error.attempt) == ("LeaseExpired", 1)

        # Everything A sends now is refused, and changes nothing.
        beat = await a.Heartbeat(
            workers_pb2.HeartbeatRequest(worker_id="worker-a", leases=[ref(first)]), metadata=ADMIN, timeout=10
        )
        assert (beat.outcomes[0].code, beat.outcomes[0].step_state) == (FAILED_PRECONDITION, S.STEP_STATE_RUNNING)
        late = workers_pb2.StepCompletion(lease=ref(first), result=struct(by="worker-a"))
        done = await a.CompleteStep(
            workers_pb2.CompleteStepRequest(worker_id="worker-a", completions=[late]), metadata=ADMIN, timeout=10
        )
        assert done.outcomes[0].code == FAILED_PRECONDITION
        failure = workers_pb2.StepFailure(lease=ref(first), error_type="Late", retryable=False)
        failed = await a.FailStep(
            workers_pb2.FailStepRequest(worker_id="worker-a", failures=[failure]), metadata=ADMIN, timeout=10
        )
        assert failed.outcomes[0].code == FAILED_PRECONDITION
        after = await get_task(any_server.channel, ADMIN, task.id)
        assert [(s.state, s.attempts) for s in after.steps] == [(S.STEP_STATE_RUNNING, 2), (S.STEP_STATE_PENDING, 0)]

        # B heartbeats past its original expiry: the lease holds, and nobody else gets the step meanwhile.
        until = time.monotonic() + 1.6
        while time.monotonic() < until:
            beat = await b.Heartbeat(
                workers_pb2.HeartbeatRequest(worker_id="worker-b", leases=[ref(second)]), metadata=ADMIN, timeout=10
            )
            assert (beat.outcomes[0].code, beat.outcomes[0].cancel_requested) == (0, False)
            assert beat.outcomes[0].lease_expire_time.ToDatetime() > second.lease_expire_time.ToDatetime()
            assert await poll(channel_a, "worker-a", 0.25) == []
        done = await b.CompleteStep(
            workers_pb2.CompleteStepRequest(
                worker_id="worker-b",
                completions=[workers_pb2.StepCompletion(lease=ref(second), result=struct(by="worker-b"))],
            ),
            metadata=ADMIN,
            timeout=10,
        )
        assert (done.outcomes[0].code, done.outcomes[0].step_state) == (0, S.STEP_STATE_COMPLETED)
        # A's completion is still refused once the step is COMPLETED with B's token.
        done = await a.CompleteStep(
            workers_pb2.CompleteStepRequest(worker_id="worker-a", completions=[late]), metadata=ADMIN, timeout=10
        )
        assert done.outcomes[0].code == FAILED_PRECONDITION

    finished = await get_task(any_server.channel, ADMIN, task.id)
    run = finished.steps[0]
    assert (run.state, run.attempts, as_dict(run.result)) == (S.STEP_STATE_COMPLETED, 2, {"by": "worker-b"})
    assert finished.steps[1].state == S.STEP_STATE_READY
    events = [
        (e.previous_step_state, e.step_state, e.attempt, e.actor)
        for e in await event_log_now(any_server, task.id)
        if e.step_name == "run" and e.attempt > 0  # not its READY at creation (attempt 0)
    ]
    assert events == [
        (S.STEP_STATE_READY, S.STEP_STATE_RUNNING, 1, "worker-a"),
        (S.STEP_STATE_RUNNING, S.STEP_STATE_READY, 1, "lease-expiry"),
        (S.STEP_STATE_READY, S.STEP_STATE_RUNNING, 2, "worker-b"),
        (S.STEP_STATE_RUNNING, S.STEP_STATE_COMPLETED, 2, "worker-b"),
    ]


async def event_log_now(running: RunningServer, task_id: str) -> list[tasks_pb2.TaskEvent]:
    """The events of a running task so far: finish it first (its last step), then replay the log."""
    [last] = await poll_after(running)
    await worker_stub(running.channel).CompleteStep(
        workers_pb2.CompleteStepRequest(completions=[workers_pb2.StepCompletion(lease=ref(last))]),
        metadata=ADMIN,
        timeout=10,
    )
    assert (await get_task(running.channel, ADMIN, task_id)).state == S.TASK_STATE_COMPLETED
    return await event_log(running.channel, ADMIN, task_id)


async def poll_after(running: RunningServer) -> list[workers_pb2.Lease]:
    request = workers_pb2.PollStepsRequest(namespace=NS, step_handlers=["job.after"], max_wait=seconds(2))
    response = await worker_stub(running.channel).PollSteps(request, metadata=ADMIN, timeout=10)
    return list(response.leases)
