"""The dispatcher: long-polled claims of READY steps, attempt outcomes, and the lease-expiry sweeper.

Every write is one transaction (`SqlStore.run_in_transaction`); after it commits the notifier wakes pollers of the
step handlers that got READY steps and watchers of every task that changed. A poller that finds nothing waits on
the notifier, and at most until the soonest delayed retry of its step handlers is due, so retries start on time
without busy polling. The sweeper sleeps until the earliest lease expiry (at most SWEEP_INTERVAL seconds, and is
woken when leases are granted) and fails expired attempts as retryable `LeaseExpired` errors.

A poll that starts while a claim of the same step handlers waits for the writer joins that claim rather than
queueing one of its own behind it. Every step made ready after that claim's transaction begins is announced after
the poll subscribed to the notifier, so when the claim leased fewer steps than it asked for (no READY step due left
behind it) the poll waits at once — and a creating transaction can hand it its steps (eager dispatch) instead of a
claim transaction. With two workers polling one handler under load, about every other claim found nothing before
(scripts/bench/tasks). Such a wait lasts DRAINED_TTL seconds at most, and never past the claim's soonest delayed
retry, before the poll looks itself: a step no notifier tells of (another process writing the same SQLite file,
a PostgreSQL claim that locked rows and rolled back) waits that long at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import Counter, Histogram
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from baton.config import EngineConfig
from baton.domain.backoff import HANDED_BACK, LEASE_EXPIRED, decide_lease_expiry, decide_retry
from baton.domain.states import StepState
from baton.engine import dispatch_sql, outcomes
from baton.engine.dispatch_sql import Lease
from baton.engine.eager import Handoffs, WaitingPoll
from baton.engine.handlers import handler_defaults
from baton.engine.metrics import EAGER_LEASES, polling
from baton.engine.notify import Notifier
from baton.engine.outcomes import INVALID_ARGUMENT, LeaseRef, Outcome, Visible
from baton.engine.task_sql import EventLog
from baton.engine.touched import Touched
from baton.observability.logging import get_logger
from baton.store import SqlStore

__all__ = ["MAX_RESULT_BYTES", "Completion", "Dispatcher", "Failure", "Lease", "LeaseRef", "Outcome"]

T = TypeVar("T")
if TYPE_CHECKING:
    from baton.engine.task_write import Rows

log = get_logger(__name__)


def _every_namespace(_: str) -> bool:
    """Visibility for the server's own outcomes: every namespace."""
    return True


#: Largest step result, encoded.
MAX_RESULT_BYTES = 256 * 1024
#: Longest sleep of the expiry sweeper.
SWEEP_INTERVAL = 5.0
#: A polling worker's presence (workers.last_seen_time) is written at most this often, in seconds.
PRESENCE_INTERVAL = 5.0
#: Presences remembered before the memory is cleared.
MAX_PRESENCES = 10_000
#: Seconds a poll trusts that a claim found its handlers' queue drained (see the module docstring).
DRAINED_TTL = 0.5
#: Attempts of a write transaction that PostgreSQL aborts as a deadlock victim.
DEADLOCK_RETRIES = 5

STEP_ATTEMPTS = Counter("baton_step_attempts_total", "Ended step attempts by outcome.", ["namespace", "outcome"])
SCHEDULE_TO_START = Histogram(
    "baton_schedule_to_start_seconds", "Time from a step becoming ready to its lease.", ["namespace"]
)
STEP_RUN = Histogram("baton_step_run_seconds", "Time from a lease to the attempt's outcome.", ["namespace"])


@dataclass(slots=True)
class _ClaimInFlight:
    """A poll's claim between its call and its end: its transaction's number in the write sequence once it began,
    whether a poll joined it, and (once `done`) whether it left its handlers' queue drained and the soonest
    delayed retry it saw."""

    done: asyncio.Future[None]
    sequence: int | None = None
    joined: bool = False
    drained: bool = False
    soonest: datetime | None = None

    @property
    def began(self) -> bool:
        return self.sequence is not None


@dataclass(frozen=True, slots=True)
class _Quiet:
    """After a joined claim (write transaction `sequence`) left the queue drained: a poll need not claim until a
    newer hint, `until` (monotonic seconds), or the soonest delayed retry."""

    sequence: int
    until: float
    soonest: datetime | None

    def over(self, notifier: Notifier, namespace: str, handlers: list[str]) -> bool:
        return (
            time.monotonic() >= self.until
            or (self.soonest is not None and self.soonest <= datetime.now(UTC))
            or notifier.hinted_since(namespace, handlers, self.sequence)
        )


@dataclass(frozen=True, slots=True)
class Completion:
    """A worker's result for a lease; `result_size` is its encoded size."""

    lease: LeaseRef
    result: dict[str, Any]
    result_size: int = 0


@dataclass(frozen=True, slots=True)
class Failure:
    """A worker's failed attempt of a lease."""

    lease: LeaseRef
    error_type: str = ""
    message: str = ""
    retryable: bool = False
    retry_after: float | None = None
    details: dict[str, Any] | None = None


class Dispatcher:
    """Leases READY steps to workers and applies the outcomes of their attempts."""

    def __init__(self, store: SqlStore, notifier: Notifier, config: EngineConfig) -> None:
        self._store = store
        self._notifier = notifier
        self._config = config
        self._defaults = handler_defaults(config)
        self._wake_sweeper = asyncio.Event()
        self._sweep_at = 0.0  # when the sweeper looks next (seconds since the epoch); 0 while it is looking
        self._seen: dict[tuple[str, str, tuple[str, ...]], float] = {}  # presence written (monotonic time)
        self._claims: dict[tuple[str, tuple[str, ...]], _ClaimInFlight] = {}  # by (namespace, step handlers)
        notifier.sequence = lambda: store.write_sequence  # hints stamped, to tell them from those a claim covered
        self._sweeper: asyncio.Task[None] | None = None
        self.handoffs = Handoffs()
        self._hand_backs: set[asyncio.Task[list[Outcome]]] = set()

    # -- leases -------------------------------------------------------------------------------------------------

    async def poll(
        self, namespace: str, step_handlers: Sequence[str], worker_id: str, max_steps: int, max_wait: float
    ) -> list[Lease]:
        """Lease up to `max_steps` READY steps, waiting at most `max_wait` seconds for some to become ready."""
        with polling(namespace):
            return await self._poll(namespace, sorted(set(step_handlers)), worker_id, max_steps, max_wait)

    async def _poll(
        self, namespace: str, handlers: list[str], worker_id: str, max_steps: int, max_wait: float
    ) -> list[Lease]:
        deadline = time.monotonic() + max(0.0, max_wait)
        quiet: _Quiet | None = None  # a joined claim left nothing: no claim while no newer hint, until `until`
        leases: list[Lease]
        while not self._closed():
            # Subscribe before looking, so that a step made ready while we claim still wakes us.
            waiter = asyncio.create_task(self._notifier.wait_for_steps(namespace, handlers, max_wait))
            await asyncio.sleep(0)
            try:
                if quiet is not None and not quiet.over(self._notifier, namespace, handlers):
                    leases, soonest = [], quiet.soonest
                else:
                    quiet = await self._join_claim(namespace, handlers, deadline) if max_wait > 0 else None
                    if quiet is None:
                        leases, soonest = await self._claimed(namespace, handlers, worker_id, max_steps)
                    else:
                        leases, soonest = [], quiet.soonest
                if leases or deadline - time.monotonic() <= 0:
                    return leases
                remaining = (deadline if quiet is None else quiet.until) - time.monotonic()
                if soonest is not None:  # a delayed retry comes due before then: look again at that time
                    due = (soonest - datetime.now(UTC)).total_seconds()
                    remaining = min(remaining, max(0.0, due) + 0.001)
                handed = await self._wait(
                    WaitingPoll(namespace, tuple(handlers), worker_id, max_steps), waiter, remaining
                )
                if handed:
                    return handed
            finally:
                waiter.cancel()
        return []

    async def _claimed(
        self, namespace: str, handlers: list[str], worker_id: str, max_steps: int
    ) -> tuple[list[Lease], datetime | None]:
        """`_claim`, which polls starting before its transaction does may join (`_join_claim`)."""
        key = (namespace, tuple(handlers))
        claim = _ClaimInFlight(asyncio.get_running_loop().create_future())
        queued = self._claims.get(key)
        if queued is None or queued.began:  # the newest claim not begun is the one to join
            self._claims[key] = claim
        try:
            leases, soonest = await self._claim(namespace, handlers, worker_id, max_steps, claim)
            claim.drained, claim.soonest = len(leases) < max_steps, soonest
            return leases, soonest
        finally:
            if self._claims.get(key) is claim:
                del self._claims[key]
            claim.done.set_result(None)

    async def _join_claim(self, namespace: str, handlers: list[str], deadline: float) -> _Quiet | None:
        """When a claim of these handlers is in flight and its transaction has not begun, wait for it; if it left
        the queue drained, how long this poll may wait without a claim of its own. None: claim."""
        claim = self._claims.get((namespace, tuple(handlers)))
        if claim is None or claim.began or self._store.write_sequence is None:
            return None
        claim.joined = True
        await asyncio.shield(claim.done)
        if not claim.drained or claim.sequence is None:
            return None
        quiet = _Quiet(claim.sequence, min(deadline, time.monotonic() + DRAINED_TTL), claim.soonest)
        return None if quiet.over(self._notifier, namespace, handlers) else quiet

    async def _wait(self, poll: WaitingPoll, waiter: asyncio.Task[bool], seconds: float) -> list[Lease]:
        """Sleep until woken, handed leases by a creating transaction (eager dispatch), or `seconds` pass.

        Only `poll.handoff` is awaited (one loop turn from a hand-over to this call going on); the wake-up and the
        timer resolve it with no leases unless a transaction holds the poll."""
        self.handoffs.wait(poll)
        timer = asyncio.get_running_loop().call_later(seconds, poll.wake)
        waiter.add_done_callback(poll.wake)
        try:
            return await poll.handoff
        finally:
            timer.cancel()
            waiter.remove_done_callback(poll.wake)
            self.handoffs.leave(poll)

    def lease_new(
        self, connection: Connection, reserved: Sequence[WaitingPoll], created: Sequence[Rows], now: datetime
    ) -> tuple[dict[WaitingPoll, list[Lease]], list[WaitingPoll]]:
        """Inside a creating transaction, before its rows are inserted: lease the new READY steps to the reserved
        polls by writing them RUNNING in the first place (no claim, no read-back, no second update of the task).

        A poll gets its steps this way only when no older READY step of its handlers is waiting (the usual case,
        or it would not have been waiting): else it is returned, for `claim_for` after the insert, which takes the
        highest priority and the longest ready first, as its own poll would. Polls are served oldest first, new
        steps highest priority first."""
        candidates = sorted(
            (
                (step, task, events)
                for task, step_rows, _, events in created
                for step in step_rows
                if step["state"] == StepState.READY.value
            ),
            key=lambda candidate: (-candidate[0]["priority"], candidate[0]["id"]),
        )
        given: dict[WaitingPoll, list[Lease]] = {}
        rest: list[WaitingPoll] = []
        started: dict[str, tuple[dict[str, Any], EventLog]] = {}
        for poll in reserved:
            if dispatch_sql.has_backlog(connection, poll.namespace, poll.handlers, now):
                rest.append(poll)
                continue
            leases: list[Lease] = []
            for step, task, events in candidates:
                if len(leases) >= poll.max_steps:
                    break
                if (
                    step["state"] != StepState.READY.value
                    or step["namespace"] != poll.namespace
                    or step["step_handler"] not in poll.handlers
                ):
                    continue
                leases.append(
                    dispatch_sql.lease_new_step(step, task, events, poll.worker_id, now, self._defaults.lease_timeout)
                )
                started[task["id"]] = (task, events)
            given[poll] = leases
        for task, events in started.values():
            dispatch_sql.start_new_task(task, events)
        return given, rest

    def claim_for(
        self, connection: Connection, reserved: Sequence[WaitingPoll], now: datetime, new_tasks: frozenset[str]
    ) -> tuple[dict[WaitingPoll, list[Lease]], list[Touched]]:
        """Inside a creating transaction: claim READY steps for each reserved poll, as its own poll would
        (`new_tasks` are the tasks this transaction created)."""
        given: dict[WaitingPoll, list[Lease]] = {}
        touched_all = []
        for poll in reserved:
            touched = Touched(connection, poll.worker_id, now)
            given[poll] = dispatch_sql.claim(
                touched,
                self._store.backend,
                poll.namespace,
                poll.handlers,
                poll.max_steps,
                self._defaults.lease_timeout,
                new_tasks,
            )
            touched_all.append(touched)
        return given, touched_all

    def handed(
        self, reserved: Sequence[WaitingPoll], given: dict[WaitingPoll, list[Lease]], touched: Sequence[Touched]
    ) -> None:
        """After the creating transaction: answer the reserved polls and account for their leases. Leases claimed
        for a poll whose caller went away meanwhile are handed back at once (READY again, the attempt refunded)."""
        Handoffs.hand_over(reserved, given)
        for poll, leases in given.items():
            if poll.gone and leases:
                self._hand_back(poll.worker_id, leases)
            self._leased(poll.namespace, leases, touched[0].now if touched else datetime.now(UTC))
            if leases:
                EAGER_LEASES.labels(poll.namespace).inc(len(leases))
        for each in touched:
            each.announce(self._notifier)

    def _hand_back(self, worker_id: str, leases: Sequence[Lease]) -> None:
        failures = [
            Failure(
                LeaseRef(lease.step_id, lease.fencing_token),
                error_type=HANDED_BACK,
                message="the polling worker went away before its lease reached it",
                retryable=True,
            )
            for lease in leases
        ]
        task = asyncio.create_task(self.fail(worker_id, failures, _every_namespace), name="baton-hand-back")
        self._hand_backs.add(task)
        task.add_done_callback(self._handed_back)

    def _claimed_for_nobody(
        self, worker_id: str, claiming: asyncio.Future[tuple[list[Lease], datetime | None, Touched]]
    ) -> None:
        if claiming.cancelled() or claiming.exception() is not None:
            return
        leases, _, touched = claiming.result()
        if leases:
            touched.announce(self._notifier)
            self._hand_back(worker_id, leases)

    def _handed_back(self, task: asyncio.Task[list[Outcome]]) -> None:
        self._hand_backs.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("lease.hand_back_failed", error=repr(task.exception()))

    def _closed(self) -> bool:
        return self._notifier.closed

    async def _claim(
        self,
        namespace: str,
        handlers: list[str],
        worker_id: str,
        max_steps: int,
        in_flight: _ClaimInFlight | None = None,
    ) -> tuple[list[Lease], datetime | None]:
        now = datetime.now(UTC)
        backend = self._store.backend

        presence = (namespace, worker_id, tuple(handlers))
        last_recorded = self._seen.get(presence)
        record_presence = last_recorded is None or time.monotonic() - last_recorded >= PRESENCE_INTERVAL

        def write(connection: Connection) -> tuple[list[Lease], datetime | None, Touched]:
            if in_flight is not None:  # from here on, polls claim for themselves
                in_flight.sequence = self._store.write_sequence
            touched = Touched(connection, worker_id, now)
            if record_presence:
                dispatch_sql.seen_worker(connection, backend, namespace, worker_id, handlers, now)
            default_timeout = self._defaults.lease_timeout
            leases = dispatch_sql.claim(touched, backend, namespace, handlers, max_steps, default_timeout)
            # The soonest delayed retry: for this poll's wait when it got nothing, and for the polls that joined.
            look = not leases or (in_flight is not None and in_flight.joined and len(leases) < max_steps)
            soonest = dispatch_sql.soonest_attempt(connection, namespace, handlers, now) if look else None
            return leases, soonest, touched

        claiming = asyncio.ensure_future(self._write(write))
        try:
            leases, soonest, touched = await asyncio.shield(claiming)
        except asyncio.CancelledError:
            # The caller went away while its claim ran (a transaction runs to its end): what it leased goes back.
            claiming.add_done_callback(partial(self._claimed_for_nobody, worker_id))
            raise
        if record_presence:
            if len(self._seen) >= MAX_PRESENCES:
                self._seen.clear()
            self._seen[presence] = time.monotonic()
        if leases:
            self._leased(namespace, leases, now)
            touched.announce(self._notifier)
        return leases, soonest

    def _leased(self, namespace: str, leases: Sequence[Lease], now: datetime) -> None:
        # The sweeper needs waking only for a lease that runs out before it next looks: under load leases are
        # granted hundreds of times a second, and each wake-up costs it a read of the earliest expiry.
        if leases and min(lease.lease_expire_time for lease in leases).timestamp() < self._sweep_at:
            self._wake_sweeper.set()
        waits = SCHEDULE_TO_START.labels(namespace)  # one child per call: labels() costs more than observe()
        for lease in leases:
            if lease.schedule_time is not None:
                waits.observe(max(0.0, (now - lease.schedule_time).total_seconds()))

    async def heartbeat(self, worker_id: str, leases: Sequence[LeaseRef], visible: Visible) -> list[Outcome]:
        """Extend the current leases; each outcome says whether its task was cancelled."""
        now = datetime.now(UTC)

        def write(connection: Connection) -> list[Outcome]:
            if worker_id:
                dispatch_sql.heard_from_worker(connection, worker_id, now)
            timeout = self._defaults.lease_timeout
            return [outcomes.heartbeat(connection, lease, visible, now, timeout) for lease in leases]

        answers = await self._write(write)
        for task_id in {outcome.task_id for outcome in answers if outcome.task_id}:
            self._notifier.task_changed(task_id)  # a step's lease_expire_time moved
        return answers

    # -- outcomes -----------------------------------------------------------------------------------------------

    async def complete(self, worker_id: str, completions: Sequence[Completion], visible: Visible) -> list[Outcome]:
        """Complete leased steps with their results; their dependents may become READY."""

        def apply(touched: Touched) -> list[Outcome]:
            answers = []
            touched.load_steps(c.lease.step_id for c in completions if c.result_size <= MAX_RESULT_BYTES)
            for completion in completions:
                if completion.result_size > MAX_RESULT_BYTES:
                    message = f"result is {completion.result_size} bytes, at most {MAX_RESULT_BYTES} allowed"
                    answers.append(Outcome(completion.lease.step_id, INVALID_ARGUMENT, message))
                    continue
                answers.append(outcomes.complete(touched, completion.lease, completion.result, visible))
            return answers

        return await self._apply(worker_id, apply)

    async def fail(self, worker_id: str, failures: Sequence[Failure], visible: Visible) -> list[Outcome]:
        """Record failed attempts: each is retried after its backoff or fails its step for good."""

        def apply(touched: Touched) -> list[Outcome]:
            answers = []
            touched.load_steps(failure.lease.step_id for failure in failures)
            for failure in failures:
                row, refused = outcomes.touched_lease(touched, failure.lease, visible)
                if refused is not None or row is None:
                    answers.append(refused or Outcome(failure.lease.step_id, outcomes.NOT_FOUND))
                    continue
                error = {
                    "error_type": failure.error_type,
                    "message": failure.message,
                    "retryable": failure.retryable,
                    "details": failure.details,
                }

                decide = partial(
                    decide_retry,
                    error_type=failure.error_type,
                    retryable=failure.retryable,
                    retry_after=failure.retry_after,
                )
                answers.append(outcomes.failed_attempt(touched, row, error, decide, self._defaults.retry))
            return answers

        return await self._apply(worker_id, apply)

    async def expire_leases(self, now: datetime | None = None) -> list[Outcome]:
        """Fail every attempt whose lease expired by `now` as a retryable LeaseExpired error."""
        at = now or datetime.now(UTC)
        backend = self._store.backend

        def apply(touched: Touched) -> list[Outcome]:
            answers = []
            expired = dispatch_sql.expired_leases(touched.connection, backend, at)
            touched.load_tasks(row.task_id for row in expired)
            for row in expired:
                error = {"error_type": LEASE_EXPIRED, "message": "the lease expired", "retryable": True}
                outcome = outcomes.failed_attempt(touched, row, error, decide_lease_expiry, self._defaults.retry)
                answers.append(replace(outcome, counted="expired"))
            return answers

        return await self._apply("lease-expiry", apply, at)

    async def _apply(
        self, actor: str, apply: Callable[[Touched], list[Outcome]], now: datetime | None = None
    ) -> list[Outcome]:
        at = now or datetime.now(UTC)

        def write(connection: Connection) -> tuple[list[Outcome], Touched]:
            touched = Touched(connection, actor, at)
            answers = apply(touched)
            touched.settle()
            return answers, touched

        answers, touched = await self._write(write)
        attempts: dict[tuple[str, str], int] = {}
        runs: dict[str, list[float]] = {}
        for outcome in answers:  # labels() once a series, not once an outcome: it costs more than inc()
            if outcome.counted:
                key = (outcome.namespace, outcome.counted)
                attempts[key] = attempts.get(key, 0) + 1
            if outcome.run_seconds is not None:
                runs.setdefault(outcome.namespace, []).append(outcome.run_seconds)
        for (namespace, counted), count in attempts.items():
            STEP_ATTEMPTS.labels(namespace, counted).inc(count)
        for namespace, seconds in runs.items():
            run_time = STEP_RUN.labels(namespace)
            for value in seconds:
                run_time.observe(value)
        touched.announce(self._notifier)
        return answers

    # -- the sweeper --------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the lease-expiry sweeper."""
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="baton-lease-sweeper")

    async def stop(self) -> None:
        """Finish the hand-backs under way, then stop the sweeper."""
        if self._hand_backs:
            await asyncio.gather(*self._hand_backs, return_exceptions=True)
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    async def _sweep_forever(self) -> None:
        while True:
            self._wake_sweeper.clear()
            self._sweep_at = 0.0  # a lease granted while it looks wakes it again at once
            wait = SWEEP_INTERVAL
            try:
                soonest = await self._read(dispatch_sql.next_expiry)  # a read: an idle server writes nothing
                if soonest is not None:
                    until = (soonest - datetime.now(UTC)).total_seconds()
                    if until <= 0 and await self.expire_leases():
                        continue
                    # Due but not expired: another transaction holds the step (it is completing); look again soon.
                    wait = min(wait, until + 0.001) if until > 0 else 0.05
            except Exception:  # a database hiccup must not stop the sweeper
                log.exception("dispatch.sweep_failed")
            self._sweep_at = time.time() + wait
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake_sweeper.wait()

    async def _write(self, fn: Callable[[Connection], T]) -> T:
        """Run a write transaction, again when PostgreSQL chose it as a deadlock victim (claims lock steps, then
        their tasks; outcomes and cancellations meet them in another order)."""
        for attempt in range(1, DEADLOCK_RETRIES + 1):
            try:
                return await self._store.run_in_transaction(fn)
            except DBAPIError as error:
                if attempt == DEADLOCK_RETRIES or not _is_lock_conflict(error):
                    raise
                await asyncio.sleep(random.uniform(0, 0.005 * attempt))
        raise AssertionError("unreachable")

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        return await self._store.run_read(fn)


def _is_lock_conflict(error: DBAPIError) -> bool:
    code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return code in ("40P01", "40001") or "deadlock detected" in str(error.orig)
