"""A hypothesis state machine of the job lifecycle, run against a plain-dict model on every
built-in adapter (memory and SQLite).

It drives the Storage port directly with a fake clock and two workers, each with the jobs
it holds: submit (into two queues), claim (by either worker, with or without a queue
filter), reports of one to three attempts in one call (success, failure or timeout with or
without retry, cancelled, handed back again and again until a hand-back counts),
`finish_and_claim` (reports of any kind, a stale one among them, then a claim), stale
reports, heartbeats,
a worker's crash (the other one lives on) and a sweep that finds it dead, rescue, cancel
(of pending jobs, and of running ones, which their worker then stops), requeue, pause and
resume of a queue, prune, reopen and clock moves; and, on an adapter with the optional
`Prefetch` capability, claims ahead (reserve), start and release of reserved jobs. After
every step the storage must agree with the model, and the lifecycle invariants must hold.

So that most steps move jobs through the lifecycle: every run starts with a batch of jobs,
submits wait while enough jobs are ready, claims wait for a ready job (most of the time),
housekeeping (sweeps, clock moves, cancels, requeues, stale reports, crashes, pause,
prune, reopen) rests a few steps after it fires, and the rules that pick a job pick among
the jobs they can act on. Each test class prints how often every rule fired, what happened
to the jobs and how much was checked, and fails if its runs never reached a part of the
lifecycle (REACHED).
"""

from __future__ import annotations

import collections
import functools
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from gigq_core.errors import GigQError, UserError
from gigq_core.plugins import make_plugin_manager, open_storage
from gigq_core.ports import Prefetch
from gigq_core.records import (
    FREE_HANDBACKS,
    ErrorInfo,
    JobFilter,
    JobRecord,
    JobStatus,
    Outcome,
    Transition,
)
from gigq_core.settings import DEFAULTS
from gigq_core.testing import FakeClock
from tests import strategies as gs

# A bound for the "ci" profile's longer runs (and their shrinking).
pytestmark = pytest.mark.timeout(900)

LEASE = 30.0
#: The two workers; either claims, heartbeats, reports and crashes on its own.
WORKERS = ("w1", "w2")
BOOM = ErrorInfo(type="ValueError", message="boom")
ACTIVE = ("pending", "reserved", "running")
BROKEN = ("failed", "cancelled", "timeout")
FINAL = ("completed", *BROKEN)
#: How a worker may report an attempt.
REPORTS = ("completed", "failed", "timeout", "cancelled", "handed_back")
#: The functions of the machine's jobs; the worker takes only some of them ahead.
NOOP = "tests.jobs:noop"
OTHER = "tests.jobs:other"
#: Ready jobs at which submitting stops until some move on (and three times as many
#: pending ones).
BACKLOG = 4
#: The queues of the machine's jobs (either may be paused).
QUEUES = ("default", "batch")
#: The queue filters of a claim (None: any queue).
queue_filters = st.sampled_from([None, ("default",), ("batch",), QUEUES])
workers = st.sampled_from(WORKERS)

# One plugin manager for every run: building one scans entry points.
PM = make_plugin_manager(load_entrypoints=False)

#: What happens to jobs, counted for the summary; a run of a test class must reach each.
REACHED = (
    "completed",
    "failed, retried",
    "failed",
    "timeout, retried",
    "timeout",
    "cancel of a running job",
    "stopped when cancelled",
    "rescued",
    "requeued",
    "handed back",
    "counted hand-back",
    "finish_and_claim",
    "claimed from a filter",
    "paused queue skipped",
)


@dataclass
class Model:
    """What the model knows of one job."""

    id: str
    name: str
    priority: int
    seq: int
    deps: tuple[str, ...]
    unique_key: str | None
    unique_scope: str
    max_attempts: int
    run_at: datetime
    queue: str = "default"
    function: str = NOOP
    status: str = "pending"
    attempts: int = 0
    handbacks: int = 0
    token: str | None = None
    #: The worker that holds (or reserved) it.
    worker: str | None = None
    lease_expires: datetime | None = None
    cancel_requested: bool = False
    #: When the job last became final (updated_at of a final job).
    final_at: datetime | None = None
    #: Execution records created for it (one per claim).
    claims: int = 0
    #: Its attempts when it was last reserved (a reservation never changes them).
    reserved_with: int | None = None


Step = TypeVar("Step", bound=Callable[..., None])

#: The names of the machine's rules (every rule is `counted`).
RULES: list[str] = []


def counted(step: Step) -> Step:
    """Count a rule's firings for the summary, and note the step it fired at for `rested`.
    Goes right on the function, under @rule."""
    name = step.__name__
    RULES.append(name)

    @functools.wraps(step)
    def counting(machine: LifecycleMachine, *args: Any, **kwargs: Any) -> None:
        machine.steps += 1
        machine.fired[name] += 1
        machine.last_fired[name] = machine.steps
        step(machine, *args, **kwargs)

    return cast(Step, counting)


def rested(
    name: str, steps: int, *, unless_idle: bool = False
) -> Callable[[LifecycleMachine], bool]:
    """A precondition: rule `name` has not fired in the last `steps` steps (or, with
    `unless_idle`, no job can move on: none is held or ready). Housekeeping that rests
    fires now and then, and leaves most steps to the lifecycle (hypothesis picks about
    evenly among the rules it may run). A rule that unsticks the lifecycle (a clock move, a
    requeue) may fire at once when it is stuck, so that a run whose
    enabled rules (hypothesis turns some off in each run) all rest does not end early."""

    def has_rested(machine: LifecycleMachine) -> bool:
        return machine.has_rested(name, steps) or (unless_idle and machine.idle())

    return has_rested


class LifecycleMachine(RuleBasedStateMachine):
    """The job lifecycle on one adapter; subclasses choose the adapter."""

    adapter = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.folder: str | None = None
        if self.adapter == "memory":
            self.target = f"memory://lifecycle_{uuid.uuid4().hex}"
        else:
            self.folder = tempfile.mkdtemp(prefix="gigq-lifecycle-")
            self.target = str(Path(self.folder) / "jobs.db")
        self.storage = self._open()
        #: Whether the adapter has the optional Prefetch capability (the reserve rules).
        self.prefetch = isinstance(self.storage, Prefetch)
        self.jobs: dict[str, Model] = {}
        #: Job id -> the token of the attempt a worker holds (`Model.worker` says which).
        self.held: dict[str, str] = {}
        #: Job id -> the token of a job a worker reserved (claimed ahead, not started).
        self.reserved: dict[str, str] = {}
        #: (job id, token) of attempts that no longer hold their job.
        self.stale: list[tuple[str, str]] = []
        #: Job id -> the upstream job whose end cancelled it (for revival by requeue).
        self.cancelled_by: dict[str, str] = {}
        #: The paused queues.
        self.paused: set[str] = set()
        self.seq = 0
        self.serial = 0
        #: Steps run so far, and the step each rule last fired at (see `rested`).
        self.steps = 0
        self.last_fired: dict[str, int] = {}
        #: Rule -> firings; what happened to jobs; what was checked. For the summary.
        self.fired: collections.Counter[str] = collections.Counter()
        self.events: collections.Counter[str] = collections.Counter()
        self.checks: collections.Counter[str] = collections.Counter()

    def has_rested(self, name: str, steps: int) -> bool:
        """Whether rule `name` has not fired in the last `steps` steps."""
        return self.steps - self.last_fired.get(name, -steps) >= steps

    def idle(self) -> bool:
        """No job can move on: none is held or reserved, none is ready."""
        return not self.held and not self.reserved and not self.ready()

    def _open(self) -> Any:
        options = dict(DEFAULTS)
        options["durability"] = "normal"
        return open_storage(self.target, options, PM)

    def teardown(self) -> None:
        try:
            self.ledger_check()
        finally:
            self.storage.close()
            if self.folder is not None:
                shutil.rmtree(self.folder, ignore_errors=True)

    def ledger_check(self) -> None:
        """At the end of a run: every job the model knows is stored once, in the model's
        state, with one execution record per claim; tallied for the run's summary."""
        records = self.storage.get_many(list(self.jobs))
        assert set(records) == set(self.jobs), "a job is missing from the storage"
        tally = TALLY.setdefault(self.adapter, collections.Counter())
        tally["runs"] += 1
        tally["jobs"] += len(self.jobs)
        for job in self.jobs.values():
            assert records[job.id].status.value == job.status, job.id
            assert len(self.storage.executions(job.id)) == job.claims, job.id
            tally["executions"] += job.claims
            tally[job.status] += 1
        self.checks["ledgers"] += 1
        for kind, counts in (("rule", self.fired), ("event", self.events)):
            tally.update({f"{kind}:{k}": n for k, n in counts.items()})
        tally.update({f"check:{k}": n for k, n in self.checks.items()})
        tally["check:steps"] += self.steps

    # -- model helpers -----------------------------------------------------------------------

    def now(self) -> datetime:
        return self.clock.now()

    def holders(self, key: str | None, scope: str) -> set[str]:
        if key is None:
            return set()
        holding = set(ACTIVE) | ({"completed"} if scope == "success" else set())
        return {j.id for j in self.jobs.values() if j.unique_key == key and j.status in holding}

    def cascade(self, upstream: str) -> set[str]:
        """Cancel the pending dependents of `upstream`, transitively; returns their ids."""
        cancelled: set[str] = set()
        todo = [upstream]
        while todo:
            parent = todo.pop(0)
            children = sorted(
                (j for j in self.jobs.values() if parent in j.deps), key=lambda j: j.seq
            )
            for child in children:
                if child.status != "pending":
                    continue
                self.end(child, "cancelled")
                self.cancelled_by[child.id] = parent
                cancelled.add(child.id)
                todo.append(child.id)
        return cancelled

    def end(self, job: Model, status: str) -> None:
        job.status = status
        job.final_at = self.now()
        self.release(job)

    def release(self, job: Model) -> None:
        """The job's attempt (or reservation) ends: its token goes stale."""
        if job.token is not None:
            self.stale.append((job.id, job.token))
        self.held.pop(job.id, None)
        self.reserved.pop(job.id, None)
        job.reserved_with = None
        job.token = None
        job.worker = None
        job.lease_expires = None
        job.cancel_requested = False

    def reset(self, job: Model) -> None:
        job.status = "pending"
        job.attempts = 0
        job.handbacks = 0
        job.run_at = max(job.run_at, self.now())  # a schedule still ahead is kept
        job.final_at = None
        self.release(job)

    def ready(self, queues: Iterable[str] | None = None) -> list[Model]:
        """The jobs a claim with the queue filter `queues` may take, in claim order."""
        now = self.now()
        wanted = set(QUEUES if queues is None else queues) - self.paused
        found = [
            j
            for j in self.jobs.values()
            if j.status == "pending"
            and j.run_at <= now
            and j.queue in wanted
            and all(d in self.jobs and self.jobs[d].status == "completed" for d in j.deps)
        ]
        return sorted(found, key=lambda j: (-j.priority, j.seq))

    def ids(self) -> list[str]:
        """Every job id, in submit order."""
        return sorted(self.jobs, key=lambda i: self.jobs[i].seq)

    def held_ids(self, worker: str | None = None) -> list[str]:
        """The ids of the jobs `worker` (None: either worker) holds, in submit order."""
        return sorted(
            (i for i in self.held if worker in (None, self.jobs[i].worker)),
            key=lambda i: self.jobs[i].seq,
        )

    def reserved_ids(self, worker: str | None = None) -> list[str]:
        """The ids of the jobs `worker` (None: either worker) reserved, in submit order."""
        return sorted(
            (i for i in self.reserved if worker in (None, self.jobs[i].worker)),
            key=lambda i: self.jobs[i].seq,
        )

    def holdings(self, worker: str) -> dict[str, str]:
        """Job id -> token of every job `worker` holds or reserved."""
        return {
            i: t
            for i, t in (*self.held.items(), *self.reserved.items())
            if self.jobs[i].worker == worker
        }

    def busy_workers(self) -> list[str]:
        """The workers that hold or reserved a job."""
        return [w for w in WORKERS if self.holdings(w)]

    def running_ids(self) -> list[str]:
        return [i for i in self.ids() if self.jobs[i].status == "running"]

    def broken_ids(self) -> list[str]:
        return [i for i in self.ids() if self.jobs[i].status in BROKEN]

    def record(self, job_id: str) -> JobRecord:
        stored = self.storage.get(job_id)
        assert stored is not None, f"job {job_id} is missing"
        return stored

    def new_record(self, data: Any, deps: list[str], key: str | None) -> JobRecord:
        now = self.now()
        self.serial += 1
        # Ids follow submit order, so a failing run replays (and prints) the same way.
        job_id = str(uuid.UUID(int=self.serial))
        return JobRecord(
            id=job_id,
            name=f"job-{self.serial}",
            function=data.draw(st.sampled_from([NOOP, NOOP, OTHER]), label="function"),
            params="{}",
            queue=data.draw(st.sampled_from(QUEUES), label="queue"),
            priority=data.draw(gs.priorities, label="priority"),
            max_attempts=data.draw(gs.max_attempts, label="max_attempts"),
            dependencies=tuple(deps),
            unique_key=key,
            unique_scope=data.draw(gs.unique_scopes, label="scope"),
            run_at=now + timedelta(seconds=data.draw(gs.delays, label="delay")),
            created_at=now,
            updated_at=now,
        )

    def insert(self, records: list[JobRecord]) -> None:
        """Insert `records` in one call and update the model the way the port says."""
        ids = self.storage.insert(records, self.now())
        assert len(ids) == len(records)
        alias: dict[str, str] = {}
        batch_keys: dict[str, str] = {}
        for record, returned in zip(records, ids, strict=True):
            holders = self.holders(record.unique_key, record.unique_scope)
            if holders:
                assert returned in holders, (returned, holders)
                alias[record.id] = returned
                continue
            if record.unique_key is not None and record.unique_key in batch_keys:
                assert returned == batch_keys[record.unique_key]
                alias[record.id] = returned
                continue
            assert returned == record.id
            if record.unique_key is not None:
                batch_keys[record.unique_key] = record.id
            deps = tuple(alias.get(d, d) for d in record.dependencies)
            self.seq += 1
            job = Model(
                id=record.id,
                name=record.name,
                priority=record.priority,
                seq=self.seq,
                deps=deps,
                unique_key=record.unique_key,
                unique_scope=record.unique_scope,
                max_attempts=record.max_attempts,
                run_at=record.run_at,
                queue=record.queue,
                function=record.function,
            )
            self.jobs[job.id] = job
            broken = [d for d in deps if self.jobs[d].status in BROKEN]
            stored = self.record(job.id)
            if broken:
                self.end(job, "cancelled")
                self.cancelled_by[job.id] = broken[0]
                assert stored.status == JobStatus.CANCELLED
                assert broken[0] in (stored.error or ""), stored.error
            assert stored.dependencies == deps
            assert stored.queue == job.queue
            assert stored.seq > 0

    # -- rules: submitting -------------------------------------------------------------------

    def backlog_is_short(self) -> bool:
        """Few jobs are ready: submitting more would bury the claims (submits come no
        faster than the jobs move on)."""
        pending = sum(j.status == "pending" for j in self.jobs.values())
        return len(self.ready()) < BACKLOG and pending < 5 * BACKLOG

    def draw_deps(self, data: Any, max_size: int) -> list[str]:
        """Dependencies on earlier jobs, now and then (a job that waits is claimed later)."""
        existing = self.ids()
        if not existing or not data.draw(st.booleans(), label="with dependencies"):
            return []
        return data.draw(
            st.lists(st.sampled_from(existing), min_size=1, max_size=max_size, unique=True),
            label="deps",
        )

    @initialize(data=st.data(), size=st.integers(min_value=3, max_value=2 * BACKLOG))
    @counted
    def first_jobs(self, data: Any, size: int) -> None:
        """Jobs to work on from the first step, in one call (hypothesis turns some rules off
        in each run, the submit rules too at times)."""
        records: list[JobRecord] = []
        for _ in range(size):
            deps = [r.id for r in records if data.draw(st.booleans(), label="depends on it")]
            key = data.draw(gs.unique_keys, label="unique_key")
            records.append(self.new_record(data, deps[:1], key))
        self.insert(records)

    @precondition(backlog_is_short)
    @rule(data=st.data())
    @counted
    def submit(self, data: Any) -> None:
        deps = self.draw_deps(data, 3)
        key = data.draw(gs.unique_keys, label="unique_key")
        self.insert([self.new_record(data, deps, key)])

    @precondition(backlog_is_short)
    @rule(data=st.data())
    @counted
    def submit_pair(self, data: Any) -> None:
        """Two jobs in one call; the second may depend on the first and share its key."""
        key = data.draw(gs.unique_keys, label="unique_key")
        first = self.new_record(data, [], key)
        deps = self.draw_deps(data, 2)
        if data.draw(st.booleans(), label="depends on first"):
            deps.append(first.id)
        second_key = data.draw(st.sampled_from([None, key]), label="second key")
        self.insert([first, self.new_record(data, deps, second_key)])

    # -- rules: claiming and reporting -------------------------------------------------------

    def claimed(
        self, worker: str, records: list[JobRecord], queues: tuple[str, ...] | None, limit: int
    ) -> None:
        """Check a claim of up to `limit` jobs by `worker` against the model (which has
        every earlier change of the same call), and update the model."""
        ready = self.ready(queues)
        expected = [j.id for j in ready[:limit]]
        assert [r.id for r in records] == expected, "claim order or readiness differs"
        now = self.now()
        for record in records:
            job = self.jobs[record.id]
            job.status = "running"
            job.attempts += 1
            job.claims += 1
            job.cancel_requested = False
            job.worker = worker
            job.lease_expires = now + timedelta(seconds=LEASE)
            assert record.status == JobStatus.RUNNING
            assert record.attempts == job.attempts
            assert record.worker_id == worker
            assert record.token
            assert record.token not in {t for _, t in self.stale}
            assert record.token not in self.held.values()
            job.token = record.token
            self.held[record.id] = record.token
        self.events["claimed"] += len(records)
        if queues is not None and records:
            self.events["claimed from a filter"] += 1
        # A ready job of a paused queue that the claim had room for was left alone.
        if self.paused and len(records) < limit and self.skipped_for_pause(queues):
            self.events["paused queue skipped"] += 1

    def skipped_for_pause(self, queues: tuple[str, ...] | None) -> bool:
        """Whether a ready job of a paused queue (within `queues`) was left for the pause."""
        paused = self.paused & set(QUEUES if queues is None else queues)
        now = self.now()
        return any(
            j.status == "pending"
            and j.queue in paused
            and j.run_at <= now
            and all(d in self.jobs and self.jobs[d].status == "completed" for d in j.deps)
            for j in self.jobs.values()
        )

    def claim_now(self, worker: str, limit: int, queues: tuple[str, ...] | None) -> None:
        records = self.storage.claim(
            worker, limit, self.now(), LEASE, list(queues) if queues is not None else None
        )
        self.claimed(worker, records, queues, limit)

    def something_to_claim(self, name: str) -> bool:
        """A precondition of claim rule `name`: a job is ready, or the rule has rested (a
        claim that finds nothing is checked now and then, not at every other step)."""
        return bool(self.ready()) or self.has_rested(name, 6)

    @precondition(lambda self: self.something_to_claim("claim"))
    @rule(worker=workers, limit=st.integers(min_value=1, max_value=3), queues=queue_filters)
    @counted
    def claim(self, worker: str, limit: int, queues: tuple[str, ...] | None) -> None:
        self.claim_now(worker, limit, queues)

    # -- rules: claiming ahead (Prefetch) ----------------------------------------------------

    @precondition(lambda self: self.prefetch and self.something_to_claim("claim_ahead"))
    @rule(
        worker=workers,
        # Mostly reserving (start 0): reserved jobs are what the rules below act on.
        start=st.sampled_from([0, 0, 0, 1, 2]),
        reserve=st.integers(min_value=0, max_value=3),
        functions=st.sampled_from([(NOOP, OTHER), (NOOP, OTHER), (NOOP,), (OTHER,), ()]),
        queues=queue_filters,
    )
    @counted
    def claim_ahead(
        self,
        worker: str,
        start: int,
        reserve: int,
        functions: tuple[str, ...],
        queues: tuple[str, ...] | None,
    ) -> None:
        ready = self.ready(queues)
        expected_started = [j.id for j in ready[:start]]
        expected_reserved = [j.id for j in ready[start:] if j.function in functions][:reserve]
        now = self.now()

        started, reserved = self.storage.claim_ahead(
            worker,
            start,
            reserve,
            now,
            LEASE,
            list(queues) if queues is not None else None,
            list(functions),
        )

        assert [r.id for r in started] == expected_started, "claim_ahead started other jobs"
        assert [r.id for r in reserved] == expected_reserved, "claim_ahead reserved other jobs"
        for record in started:
            job = self.jobs[record.id]
            job.status = "running"
            job.attempts += 1
            job.claims += 1
            job.cancel_requested = False
            job.worker = worker
            job.lease_expires = now + timedelta(seconds=LEASE)
            assert record.status == JobStatus.RUNNING
            assert record.attempts == job.attempts
            assert record.worker_id == worker
            assert record.started_at is not None
            assert record.token
            assert record.token not in {t for _, t in self.stale}
            job.token = record.token
            self.held[record.id] = record.token
        for record in reserved:
            job = self.jobs[record.id]
            job.status = "reserved"
            job.worker = worker
            job.reserved_with = job.attempts
            job.lease_expires = now + timedelta(seconds=LEASE)
            assert record.status == JobStatus.RESERVED
            assert record.attempts == job.attempts, "a reservation counted an attempt"
            assert record.worker_id == worker
            assert record.started_at is None
            assert record.token
            assert record.token not in {t for _, t in self.stale}
            assert record.token not in self.held.values()
            job.token = record.token
            self.reserved[record.id] = record.token
        self.events["claimed"] += len(started)
        self.events["reserved"] += len(reserved)

    def pick_reserved(self, data: Any) -> tuple[str, dict[str, str]]:
        """A worker with reservations, some of them with their tokens, and one or two tokens
        that hold no reservation of that worker, of jobs not among them (which must be left
        alone): stale ones, forged ones of the other reserved jobs, and the tokens of
        running jobs (already started)."""
        worker = data.draw(
            st.sampled_from([w for w in WORKERS if self.reserved_ids(w)]), label="worker"
        )
        chosen = data.draw(
            st.lists(st.sampled_from(self.reserved_ids(worker)), min_size=1, unique=True),
            label="reserved",
        )
        sent = {job_id: self.reserved[job_id] for job_id in chosen}
        others = (
            list(self.stale)
            + [(i, f"forged-{i}") for i in self.reserved_ids()]
            + [(i, self.held[i]) for i in self.held_ids(worker)]
        )
        others = [(i, t) for i, t in others if i not in sent]
        if others:
            for job_id, token in data.draw(
                st.lists(st.sampled_from(others), min_size=1, max_size=2), label="not reserved"
            ):
                sent[job_id] = token
        return worker, sent

    @precondition(lambda self: self.reserved)
    @rule(data=st.data())
    @counted
    def start_reserved(self, data: Any) -> None:
        worker, sent = self.pick_reserved(data)
        expected = {i for i in sent if self.reserved.get(i) == sent[i]}
        # A stale token may be of a job pruned since: get() is None for it.
        before = {i: self.storage.get(i) for i in sent}
        now = self.now()

        # The worker hands back the records it holds; a job gone since is no longer held.
        held = [attrs.evolve(record, token=sent[i]) for i, record in before.items() if record]
        started = self.storage.start(worker, held, now)

        assert {r.id for r in started} == expected, "start started other jobs"
        assert len(started) == len(expected)
        for record in started:
            job = self.jobs[record.id]
            token = self.reserved.pop(record.id)
            assert job.attempts == job.reserved_with, "attempts changed while reserved"
            job.reserved_with = None
            job.status = "running"
            job.attempts += 1
            job.claims += 1
            job.cancel_requested = False
            assert record.status == JobStatus.RUNNING
            assert record.attempts == job.attempts
            assert record.worker_id == worker
            assert record.token == token
            assert record.started_at == now
            assert record.lease_expires_at == job.lease_expires
            self.held[record.id] = token
            [*_, execution] = self.storage.executions(record.id)
            assert (execution.status, execution.attempt) == ("running", job.attempts)
            assert execution.token == token
        for job_id in set(sent) - expected:
            assert self.storage.get(job_id) == before[job_id], "start changed a job not held"
        self.events["started"] += len(started)

    @precondition(lambda self: self.reserved)
    @rule(data=st.data())
    @counted
    def release_reservations(self, data: Any) -> None:
        _, sent = self.pick_reserved(data)
        expected = {i for i in sent if self.reserved.get(i) == sent[i]}
        # A stale token may be of a job pruned since: get() is None for it.
        before = {i: self.storage.get(i) for i in sent}

        released = self.storage.release(sent, self.now())

        assert sorted(released) == sorted(expected), "release released other jobs"
        for job_id in expected:
            job = self.jobs[job_id]
            assert job.attempts == job.reserved_with, "attempts changed while reserved"
            self.release(job)
            job.status = "pending"
            record = self.record(job_id)
            assert record.status == JobStatus.PENDING
            was = before[job_id]
            assert was is not None
            assert (record.attempts, record.handbacks) == (was.attempts, was.handbacks)
            assert (record.token, record.worker_id, record.lease_expires_at) == (None, None, None)
        for job_id in set(sent) - expected:
            assert self.storage.get(job_id) == before[job_id], "release changed a job not held"
        self.events["released"] += len(released)

    # -- reports -----------------------------------------------------------------------------

    def outcome(self, data: Any, job_id: str, status: str) -> Outcome:
        """The report of `status` for the attempt held on `job_id`; a failure or timeout is
        retried if the worker would (attempts left) and chooses to."""
        job = self.jobs[job_id]
        token = self.held[job_id]
        if status == "completed":
            return Outcome(job_id=job_id, token=token, status=status, result='"done"')
        if status in ("failed", "timeout"):
            retry_at = None
            if job.attempts < job.max_attempts and not data.draw(
                st.booleans(), label="final (no retry)"
            ):
                retry_at = self.now() + timedelta(seconds=data.draw(gs.retry_delays, label="wait"))
            return Outcome(job_id=job_id, token=token, status=status, error=BOOM, retry_at=retry_at)
        return Outcome(job_id=job_id, token=token, status=status)

    def finish(self, *outcomes: Outcome) -> None:
        """Report `outcomes` of held attempts in one call (a worker's group commit)."""
        transitions = self.storage.finish(outcomes, self.now())
        assert len(transitions) == len(outcomes)
        for outcome, transition in zip(outcomes, transitions, strict=True):
            self.reported(outcome, transition)

    def some_held(self, data: Any) -> list[str]:
        """One to three of the held jobs (of either worker)."""
        return data.draw(
            st.lists(st.sampled_from(self.held_ids()), min_size=1, max_size=3, unique=True),
            label="jobs",
        )

    def reported(self, outcome: Outcome, transition: Transition | None) -> None:
        """Check the storage's answer to the report of a held attempt, and update the model."""
        assert transition is not None, f"{outcome.status} of a held attempt was fenced"
        job = self.jobs[outcome.job_id]
        assert transition.job.id == job.id
        status = outcome.status
        if status == "completed":
            self.end(job, "completed")
            assert transition.job.result == outcome.result
            assert transition.cancelled == ()
            self.events["completed"] += 1
        elif status in ("failed", "timeout") and outcome.retry_at is not None:
            self.release(job)
            job.status = "pending"
            job.run_at = outcome.retry_at
            assert transition.cancelled == ()
            assert transition.job.run_at == outcome.retry_at
            self.events[f"{status}, retried"] += 1
        elif status in ("failed", "timeout", "cancelled"):
            self.end(job, status)
            assert {r.id for r in transition.cancelled} == self.cascade(job.id)
            self.events[status] += 1
        else:
            assert status == "handed_back"
            self.release(job)
            job.status = "pending"
            job.run_at = self.now()
            self.events["handed back"] += 1
            # The first FREE_HANDBACKS hand-backs do not count the attempt; each later one
            # does, and with no attempt left the job ends failed (docs/guarantees.md D4:
            # restarts cannot loop it forever).
            if job.handbacks < FREE_HANDBACKS:
                job.attempts -= 1
            else:
                self.events["counted hand-back"] += 1
            job.handbacks += 1
            if job.attempts >= job.max_attempts:
                self.end(job, "failed")
                assert {r.id for r in transition.cancelled} == self.cascade(job.id)
                assert "no attempts left" in (transition.job.error or ""), transition.job
                self.events["failed by hand-backs"] += 1
            else:
                assert transition.cancelled == ()
        assert transition.job.status == JobStatus(job.status)
        assert transition.job.attempts == job.attempts
        assert transition.job.handbacks == job.handbacks

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    @counted
    def succeed(self, data: Any) -> None:
        self.finish(*(self.outcome(data, i, "completed") for i in self.some_held(data)))

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    @counted
    def fail_attempt(self, data: Any) -> None:
        self.finish(*(self.outcome(data, i, "failed") for i in self.some_held(data)))

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    @counted
    def time_out(self, data: Any) -> None:
        self.finish(*(self.outcome(data, i, "timeout") for i in self.some_held(data)))

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    @counted
    def report_cancelled(self, data: Any) -> None:
        self.finish(*(self.outcome(data, i, "cancelled") for i in self.some_held(data)))

    @precondition(lambda self: self.held)
    @rule(data=st.data(), times=st.integers(min_value=1, max_value=FREE_HANDBACKS + 2))
    @counted
    def hand_back(self, data: Any, times: int) -> None:
        """A stopping worker hands a job back; its worker claims it again (with the jobs
        ahead of it in its queue) and hands it back, `times` hand-backs in all unless it
        ends or its queue is paused: the hand-back after FREE_HANDBACKS counts an attempt."""
        job_id = data.draw(st.sampled_from(self.held_ids()), label="job")
        job = self.jobs[job_id]
        worker = job.worker
        assert worker is not None
        for round_ in range(times):
            if round_:
                ready = [j.id for j in self.ready((job.queue,))]
                if job_id not in ready:
                    return
                self.claim_now(worker, ready.index(job_id) + 1, (job.queue,))
                assert self.held.get(job_id) is not None, "the job handed back was not claimed"
            self.finish(self.outcome(data, job_id, "handed_back"))

    @precondition(lambda self: self.held or self.ready())
    @rule(
        data=st.data(),
        limit=st.integers(min_value=0, max_value=3),
        queues=queue_filters,
    )
    @counted
    def finish_and_claim(self, data: Any, limit: int, queues: tuple[str, ...] | None) -> None:
        """A worker reports attempts it holds, each its own way (and now and then a stale
        one), and claims more in the same transaction: the claim sees what the reports
        changed. A worker that holds nothing reports nothing, and only claims."""
        worker = data.draw(st.sampled_from(self.busy_workers() or list(WORKERS)), label="worker")
        mine = self.held_ids(worker)
        chosen = (
            data.draw(st.lists(st.sampled_from(mine), max_size=3, unique=True), label="jobs")
            if mine
            else []
        )
        outcomes = [
            self.outcome(data, i, data.draw(st.sampled_from(REPORTS), label="outcome"))
            for i in chosen
        ]
        stale = bool(self.stale) and data.draw(st.booleans(), label="a stale report")
        if stale:
            # Fenced, wherever it comes in the batch: nothing of it changes (the invariant
            # after this step compares every job).
            stale_id, token = data.draw(st.sampled_from(self.stale), label="stale attempt")
            kind = data.draw(st.sampled_from(REPORTS), label="stale outcome")
            at = data.draw(st.integers(0, len(outcomes)), label="at")
            outcomes.insert(at, Outcome(job_id=stale_id, token=token, status=kind, error=BOOM))

        transitions, records = self.storage.finish_and_claim(
            outcomes,
            self.now(),
            worker,
            limit,
            LEASE,
            list(queues) if queues is not None else None,
        )

        assert len(transitions) == len(outcomes)
        for outcome, transition in zip(outcomes, transitions, strict=True):
            if outcome.job_id in self.held and self.held[outcome.job_id] == outcome.token:
                self.reported(outcome, transition)
            else:
                assert transition is None, "a stale report changed a job"
        self.claimed(worker, records, queues, limit)
        self.events["finish_and_claim"] += 1

    @precondition(
        lambda self: (
            (self.stale or self.reserved or self.running_ids())
            and self.has_rested("report_with_a_stale_token", 5)
        )
    )
    @rule(
        data=st.data(),
        kind=st.sampled_from(["completed", "failed", "timeout", "cancelled", "handed_back"]),
    )
    @counted
    def report_with_a_stale_token(self, data: Any, kind: str) -> None:
        """A report under a token that holds no running attempt: a stale one, a forged one,
        or a reservation's (a reserved job never started, so nothing of it is finished)."""
        choices = (
            list(self.stale)
            + [(j.id, f"forged-{j.id}") for j in self.jobs.values() if j.status == "running"]
            + list(self.reserved.items())
        )
        job_id, token = data.draw(st.sampled_from(choices), label="stale attempt")
        before = self.storage.get(job_id)
        runs = self.storage.executions(job_id)
        retry_at = self.now() if kind in ("failed", "timeout") else None
        outcome = Outcome(
            job_id=job_id, token=token, status=kind, result="1", error=BOOM, retry_at=retry_at
        )

        assert self.storage.finish([outcome], self.now()) == [None]

        assert self.storage.get(job_id) == before
        assert self.storage.executions(job_id) == runs

    # -- rules: leases -----------------------------------------------------------------------

    def beat(self, worker: str, stale: list[tuple[str, str]]) -> frozenset[str]:
        """`worker` heartbeats the jobs it holds, and the `stale` tokens; returns the jobs
        whose cancel it is asked for."""
        mine = self.holdings(worker)
        sent = {**dict(stale), **mine}
        now = self.now()

        reply = self.storage.heartbeat(worker, sent, now, LEASE)

        assert reply.lost == frozenset(i for i in sent if i not in mine)
        assert reply.cancel_requested == frozenset(
            i for i in mine if i in self.held and self.jobs[i].cancel_requested
        )
        for job_id in mine:
            self.jobs[job_id].lease_expires = now + timedelta(seconds=LEASE)
        return reply.cancel_requested

    @precondition(lambda self: self.busy_workers() and self.has_rested("heartbeat", 2))
    @rule(worker=workers, data=st.data())
    @counted
    def heartbeat(self, worker: str, data: Any) -> None:
        stale = [(i, t) for i, t in self.stale if i not in self.holdings(worker)]
        self.beat(
            worker,
            data.draw(st.lists(st.sampled_from(stale), max_size=2), label="stale in heartbeat")
            if stale
            else [],
        )

    def rescue_now(self, dead: str | None = None) -> None:
        """A rescue sweep at the current time; `dead`: that worker is known dead."""
        now = self.now()
        expected = sorted(
            (
                j
                for j in self.jobs.values()
                if j.status in ("running", "reserved")
                and (
                    (dead is not None and j.worker == dead)
                    or (j.lease_expires is not None and j.lease_expires < now)
                )
            ),
            key=lambda j: j.seq,
        )

        transitions = self.storage.rescue(now, [dead] if dead is not None else [])

        assert [t.job.id for t in transitions] == [j.id for j in expected]
        for job, transition in zip(expected, transitions, strict=True):
            if job.status == "reserved":
                # Never started: pending again, nothing counted (no attempt, no hand-back,
                # no "worker lost", no execution record).
                self.release(job)
                job.status = "pending"
                assert transition.previous == JobStatus.RESERVED
                assert transition.job.status == JobStatus.PENDING
                assert transition.job.attempts == job.attempts
                assert transition.job.handbacks == job.handbacks
                assert transition.job.token is None
                assert transition.job.worker_id is None
                assert transition.job.lease_expires_at is None
                assert transition.error is None
                assert transition.cancelled == ()
                assert len(self.storage.executions(job.id)) == job.claims
                self.events["reservation rescued"] += 1
                continue
            assert transition.previous == JobStatus.RUNNING
            if job.attempts >= job.max_attempts:
                self.end(job, "failed")
                assert {r.id for r in transition.cancelled} == self.cascade(job.id)
            else:
                self.release(job)
                job.status = "pending"
                job.run_at = now
                assert transition.cancelled == ()
            assert transition.job.status == JobStatus(job.status)
            assert "worker lost" in (transition.job.error or "")
            assert self.storage.executions(job.id)[-1].status == "lost"
            self.events["rescued"] += 1

    @precondition(rested("rescue", 6))
    @rule()
    @counted
    def rescue(self) -> None:
        self.rescue_now()

    def forget(self, worker: str) -> None:
        """`worker` dies: the tokens it held are gone with it (the storage still has them)."""
        for job_id in self.holdings(worker):
            self.held.pop(job_id, None)
            self.reserved.pop(job_id, None)

    @precondition(lambda self: self.busy_workers() and rested("crash", 5)(self))
    @rule(data=st.data())
    @counted
    def crash(self, data: Any) -> None:
        """A worker dies: its leases run out while the other worker heartbeats on, and a
        sweep rescues only the dead worker's jobs."""
        worker = data.draw(st.sampled_from(self.busy_workers()), label="worker")
        [other] = [w for w in WORKERS if w != worker]
        self.forget(worker)
        # Two half-leases: the dead worker's leases (renewed at the latest now) run out;
        # the other's, renewed half-way, do not.
        self.clock.advance(LEASE / 2 + 1)
        self.beat(other, [])
        self.clock.advance(LEASE / 2 + 1)
        self.rescue_now()
        assert not any(
            j.status in ("running", "reserved") and j.worker == worker for j in self.jobs.values()
        )
        assert all(self.jobs[i].status in ("running", "reserved") for i in self.holdings(other))

    @precondition(lambda self: self.busy_workers() and rested("rescue_dead_worker", 5)(self))
    @rule(data=st.data())
    @counted
    def rescue_dead_worker(self, data: Any) -> None:
        """A rescuer finds a worker dead before its leases run out."""
        worker = data.draw(st.sampled_from(self.busy_workers()), label="worker")
        self.forget(worker)
        self.rescue_now(dead=worker)
        assert not any(
            j.status in ("running", "reserved") and j.worker == worker for j in self.jobs.values()
        )

    @precondition(rested("advance_clock", 5, unless_idle=True))
    @rule(seconds=gs.clock_steps)
    @counted
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    # -- rules: steering ---------------------------------------------------------------------

    def cancel_one(self, job_id: str) -> None:
        job = self.jobs[job_id]

        transitions = self.storage.cancel([job_id], self.now(), "stop")

        if job.status in ("pending", "reserved"):
            # A reserved job never started: it is cancelled at once, like a pending one.
            previous = JobStatus(job.status)
            self.end(job, "cancelled")
            self.cancelled_by.pop(job_id, None)
            [transition] = transitions
            assert transition.previous == previous
            assert transition.job.status == JobStatus.CANCELLED
            assert not transition.job.cancel_requested
            assert {r.id for r in transition.cancelled} == self.cascade(job_id)
            self.events[f"cancel of a {previous.value} job"] += 1
        elif job.status == "running" and not job.cancel_requested:
            job.cancel_requested = True
            [transition] = transitions
            assert transition.job.status == JobStatus.RUNNING
            assert transition.job.cancel_requested
            assert transition.cancelled == ()
            self.events["cancel of a running job"] += 1
        elif job.status == "running":
            assert len(transitions) <= 1
        else:
            assert transitions == []

    @precondition(lambda self: self.jobs and rested("cancel", 6)(self))
    @rule(data=st.data())
    @counted
    def cancel(self, data: Any) -> None:
        self.cancel_one(data.draw(st.sampled_from(self.ids()), label="job"))

    @precondition(lambda self: self.running_ids())
    @rule(data=st.data(), keeps_running=st.booleans())
    @counted
    def cancel_running(self, data: Any, keeps_running: bool) -> None:
        """Cancel a running job; unless it `keeps_running` (for now), its worker learns of
        the cancel at its next heartbeat and reports the job cancelled."""
        job_id = data.draw(st.sampled_from(self.running_ids()), label="job")
        self.cancel_one(job_id)
        job = self.jobs[job_id]
        if keeps_running or job.worker is None or job_id not in self.held:
            return
        assert job_id in self.beat(job.worker, []), "the worker was not told of the cancel"
        self.finish(self.outcome(data, job_id, "cancelled"))
        self.events["stopped when cancelled"] += 1

    def would_revive(self, job_id: str) -> list[str]:
        """Every job that `job_id`'s end cancelled, transitively (a requeue may revive them)."""
        revived: list[str] = []
        todo = [job_id]
        while todo:
            parent = todo.pop(0)
            for child in self.ids():
                if (
                    self.cancelled_by.get(child) == parent
                    and self.jobs[child].status == "cancelled"
                ):
                    revived.append(child)
                    todo.append(child)
        return revived

    def broken_dependency(self, job_id: str) -> str | None:
        """The first dependency (in the order given) that ended badly for good, if any."""
        for dep in self.jobs[job_id].deps:
            if dep in self.jobs and self.jobs[dep].status in BROKEN:
                return dep
        return None

    def key_conflict(self, job_id: str) -> bool:
        """Would putting `job_id` back to pending make two active jobs with one unique key?"""
        key = self.jobs[job_id].unique_key
        return key is not None and any(
            j.unique_key == key and j.status in ACTIVE and j.id != job_id
            for j in self.jobs.values()
        )

    def requeue_is_refused(self, job_id: str) -> None:
        """Requeueing a job whose unique key another active job holds must change nothing:
        the job is omitted, or a user error says why; never a storage failure."""
        before = self.storage.list_jobs(JobFilter(), limit=100_000)
        try:
            transitions = self.storage.requeue([job_id], self.now())
        except UserError:
            transitions = []
        except GigQError as err:
            raise AssertionError(
                f"requeue of a job whose unique key is held failed in the storage: {err!r}"
            ) from err
        assert transitions == [], "requeue made a second active job with one unique key"
        assert self.storage.list_jobs(JobFilter(), limit=100_000) == before
        self.events["requeue refused (key held)"] += 1

    def stays_cancelled(self, job_id: str, upstream: str) -> None:
        """A job that cannot run because `upstream` ended badly is (again) cancelled by it."""
        self.recancel(job_id, upstream)
        self.check_cancelled(job_id, upstream)

    def recancel(self, job_id: str, upstream: str) -> None:
        """The model's side of `stays_cancelled`."""
        job = self.jobs[job_id]
        assert job.status == "cancelled"
        job.final_at = self.now()
        self.cancelled_by[job_id] = upstream

    def check_cancelled(self, job_id: str, upstream: str) -> None:
        """The storage's side of `stays_cancelled`."""
        record = self.record(job_id)
        assert record.status == JobStatus.CANCELLED, (
            f"job {job_id} was put back to pending although its dependency {upstream} is "
            f"{self.jobs[upstream].status}"
        )
        assert upstream in (record.error or ""), record.error

    @precondition(lambda self: self.jobs and rested("requeue", 5, unless_idle=True)(self))
    @rule(data=st.data())
    @counted
    def requeue(self, data: Any) -> None:
        """Requeue a job that ended badly (now and then any job: the others are omitted)."""
        broken = self.broken_ids()
        anyone = not broken or data.draw(st.booleans(), label="any job")
        job_id = data.draw(st.sampled_from(self.ids() if anyone else broken), label="job")
        job = self.jobs[job_id]
        if job.status not in BROKEN:
            assert self.storage.requeue([job_id], self.now()) == []
            return
        if self.key_conflict(job_id):
            self.requeue_is_refused(job_id)
            return
        family = [job_id, *self.would_revive(job_id)]
        keys = [self.jobs[i].unique_key for i in family if self.jobs[i].unique_key is not None]
        if len(keys) != len(set(keys)) or any(self.key_conflict(i) for i in family):
            # Which of the revived dependents sharing a unique key comes back is not
            # specified; only the direct case is (refused, above).
            return
        if any(d not in self.jobs for i in family for d in self.jobs[i].deps):
            # A dependency was pruned: whether it still counts as done is not specified.
            return
        upstream = self.broken_dependency(job_id)

        transitions = self.storage.requeue([job_id], self.now())

        if upstream is not None:
            # It would wait forever: it stays cancelled, and is not reported as requeued.
            assert transitions == [], "a job whose dependency ended badly was requeued"
            self.stays_cancelled(job_id, upstream)
            self.events["requeue refused (dependency broken)"] += 1
            return
        [transition] = transitions
        self.reset(job)
        self.cancelled_by.pop(job_id, None)
        revived: set[str] = set()
        # A dependent blocked at one step may be revived at a later one (its blocker is
        # revived too, further down), so the storage is checked once the walk is done.
        stuck: dict[str, str] = {}
        frontier = [job_id]
        while frontier:
            children = [
                child
                for child in self.ids()
                if self.cancelled_by.get(child) in frontier
                and self.jobs[child].status == "cancelled"
            ]
            frontier = []
            for child in children:
                blocker = self.broken_dependency(child)
                if blocker is not None:
                    self.recancel(child, blocker)
                    stuck[child] = blocker
                    continue
                self.reset(self.jobs[child])
                self.cancelled_by.pop(child, None)
                stuck.pop(child, None)
                revived.add(child)
                frontier.append(child)
        for child, blocker in stuck.items():
            self.check_cancelled(child, blocker)
        assert transition.job.status == JobStatus.PENDING
        assert {r.id for r in transition.revived} == revived
        self.events["requeued"] += 1
        self.events["revived"] += len(revived)

    def set_paused(self, queue: str, paused: bool) -> None:
        self.storage.set_queue_paused(queue, paused)

        if paused:
            self.paused.add(queue)
        else:
            self.paused.discard(queue)
        assert self.storage.paused_queues() == frozenset(self.paused)

    @precondition(rested("pause", 8))
    @rule(
        queue=st.sampled_from(QUEUES),
        worker=workers,
        stays_paused=st.booleans(),
    )
    @counted
    def pause(self, queue: str, worker: str, stays_paused: bool) -> None:
        """Pause a queue: it keeps its jobs, and none is claimed (a claim right away, and
        the claim rules until it is resumed, check it); unless it `stays_paused`, it is
        resumed after that claim. A queue paused already is resumed instead (so a run in
        which hypothesis turned the resume rule off does not stall)."""
        if queue in self.paused:
            self.set_paused(queue, False)
            return
        self.set_paused(queue, True)
        self.claim_now(worker, 3, None)
        if not stays_paused:
            self.set_paused(queue, False)

    @precondition(lambda self: self.paused)
    @rule(data=st.data())
    @counted
    def resume(self, data: Any) -> None:
        """Resume a paused queue (soon after its pause: the rule may fire at once)."""
        self.set_paused(data.draw(st.sampled_from(sorted(self.paused)), label="queue"), False)

    @precondition(rested("prune", 12))
    @rule(statuses=gs.prunable_statuses, back=st.sampled_from([-1, 0, 10, 40]))
    @counted
    def prune(self, statuses: list[str], back: int) -> None:
        before = self.now() - timedelta(seconds=back)
        needed = {d for j in self.jobs.values() if j.status in ACTIVE for d in j.deps}
        doomed = [
            j.id
            for j in self.jobs.values()
            if j.status in statuses
            and j.final_at is not None
            and j.final_at < before
            and j.id not in needed
        ]

        assert self.storage.prune(before, statuses) == len(doomed)

        for job_id in doomed:
            del self.jobs[job_id]
            self.cancelled_by.pop(job_id, None)
            assert self.storage.get(job_id) is None
            assert self.storage.executions(job_id) == []
        self.events["pruned"] += len(doomed)

    @precondition(rested("reopen", 15))
    @rule()
    @counted
    def reopen(self) -> None:
        self.storage.close()
        self.storage = self._open()
        assert isinstance(self.storage, Prefetch) == self.prefetch
        assert self.storage.paused_queues() == frozenset(self.paused)

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def storage_agrees_with_the_model(self) -> None:
        """Checked after every step, on one listing of the whole store."""
        records = {r.id: r for r in self.storage.list_jobs(JobFilter(), limit=100_000)}
        self.statuses_match_the_model(records)
        self.running_only_when_held(records)
        self.reserved_only_when_reserved(records)
        self.attempts_within_max_attempts(records)
        self.dependents_of_a_broken_job_are_cancelled(records)
        self.at_most_one_active_job_per_unique_key(records)
        self.one_execution_per_claim()
        self.checks["invariants"] += 1
        self.checks["jobs compared"] += len(records)

    def statuses_match_the_model(self, records: dict[str, JobRecord]) -> None:
        assert set(records) == set(self.jobs), "stored jobs differ from the model"
        for record in records.values():
            job = self.jobs[record.id]
            assert record.status.value == job.status, (record.id, record.status, job.status)
            assert record.attempts == job.attempts, (record.id, record.attempts, job.attempts)
            assert record.handbacks == job.handbacks, (record.id, record.handbacks, job.handbacks)

    def running_only_when_held(self, records: dict[str, JobRecord]) -> None:
        """A running job is one a worker holds, under its token, in that worker's name."""
        running = {r.id: r.token for r in records.values() if r.status == JobStatus.RUNNING}
        assert running == self.held, "a job runs that no worker holds (or a held one not)"
        for job_id in running:
            assert records[job_id].worker_id == self.jobs[job_id].worker, records[job_id]

    def reserved_only_when_reserved(self, records: dict[str, JobRecord]) -> None:
        """A reserved job is one a worker reserved, under its token and lease, in its name,
        not started, its attempts as they were when it was reserved."""
        reserved = {r.id: r.token for r in records.values() if r.status == JobStatus.RESERVED}
        assert reserved == self.reserved, "a reserved job no worker reserved (or one lost)"
        for job_id in reserved:
            record, job = records[job_id], self.jobs[job_id]
            assert record.started_at is None, record
            assert record.worker_id == job.worker, record
            assert record.lease_expires_at == job.lease_expires, record
            assert record.attempts == job.reserved_with == job.attempts, (record, job)

    def attempts_within_max_attempts(self, records: dict[str, JobRecord]) -> None:
        for record in records.values():
            assert 0 <= record.attempts <= record.max_attempts, record

    def dependents_of_a_broken_job_are_cancelled(self, records: dict[str, JobRecord]) -> None:
        for record in records.values():
            broken = [
                d for d in record.dependencies if d in records and records[d].status.value in BROKEN
            ]
            if broken:
                assert record.status == JobStatus.CANCELLED, (
                    f"job {record.id} is {record.status.value} although its dependency "
                    f"{broken[0]} is {records[broken[0]].status.value}"
                )

    def at_most_one_active_job_per_unique_key(self, records: dict[str, JobRecord]) -> None:
        keys = [
            r.unique_key
            for r in records.values()
            if r.unique_key is not None and r.status.value in ACTIVE
        ]
        assert len(keys) == len(set(keys)), f"two active jobs share a unique key: {keys}"

    def one_execution_per_claim(self) -> None:
        for job in self.jobs.values():
            assert len(self.storage.executions(job.id)) == job.claims, job.id


#: Steps per run: room for several jobs to go all the way through the lifecycle.
STEPS = 100


def machine_settings(examples: int) -> settings:
    """`examples` runs of up to STEPS steps under the default profile; four times as many
    under the "ci" profile (HYPOTHESIS_PROFILE=ci)."""
    scale = 4 if settings.default.max_examples >= 500 else 1
    return settings(max_examples=examples * scale, stateful_step_count=STEPS, deadline=None)


class MemoryLifecycle(LifecycleMachine):
    adapter = "memory"


class SqliteLifecycle(LifecycleMachine):
    adapter = "sqlite"


#: Adapter -> counts over every run of its machine, for the one-line summary.
TALLY: dict[str, collections.Counter[str]] = {}


def print_summary(adapter: str) -> collections.Counter[str]:
    """Print the one-line summary of the machine's runs on `adapter`, and return its
    counts: the jobs' final states, what happened to jobs, how often each rule fired, and
    what was checked (each run ended with its ledger check, so a mismatch would have
    failed it)."""
    tally = TALLY.pop(adapter, collections.Counter())

    def group(prefix: str) -> str:
        found = sorted(
            (k.removeprefix(prefix), n) for k, n in tally.items() if k.startswith(prefix)
        )
        return ", ".join(f"{k}={n}" for k, n in found)

    states = ",".join(
        f"{s}={tally[s]}" for s in ("pending", "reserved", "running", *FINAL) if tally[s]
    )
    print(
        f"[lifecycle {adapter}] runs={tally['runs']} jobs={tally['jobs']} {states} "
        f"executions={tally['executions']} | checked: {group('check:')} | "
        f"events: {group('event:')} | rules: {group('rule:')}"
    )
    return tally


def assert_lifecycle_reached(tally: collections.Counter[str], every_rule: bool) -> None:
    """The runs reached every part of the lifecycle in REACHED and, if `every_rule`, fired
    every rule (the reserve rules only on an adapter with Prefetch, where claim_ahead
    fires)."""
    missed = [e for e in REACHED if not tally[f"event:{e}"]]
    never = [r for r in RULES if every_rule and not tally[f"rule:{r}"]]
    if not tally["rule:claim_ahead"]:
        never = [r for r in never if r not in PREFETCH_RULES]
    assert not never and not missed, f"never fired: {never}; never reached: {missed}"


#: The rules that need the Prefetch capability.
PREFETCH_RULES = ("claim_ahead", "start_reserved", "release_reservations")


class _Summarized:
    """Prints the adapter's one-line summary once its runs are over, and checks that they
    reached the whole lifecycle."""

    adapter = "memory"
    #: Check that every rule fired (where the runs are many enough that none is rare).
    every_rule = False

    @classmethod
    def tearDownClass(cls) -> None:
        tally = print_summary(cls.adapter)
        if tally["runs"] >= MIN_RUNS:
            assert_lifecycle_reached(tally, cls.every_rule)


#: Fewer runs (one example replayed, say) prove nothing about reach.
MIN_RUNS = 20


# The in-memory adapter is cheap, so it gets more runs; SQLite writes a file per step.
class TestMemoryLifecycle(_Summarized, MemoryLifecycle.TestCase):  # type: ignore[misc,name-defined]
    adapter = "memory"
    every_rule = True
    settings = machine_settings(100)


class TestSqliteLifecycle(_Summarized, SqliteLifecycle.TestCase):  # type: ignore[misc,name-defined]
    adapter = "sqlite"
    settings = machine_settings(50)
