"""A hypothesis state machine of the job lifecycle, run against a plain-dict model on every
built-in adapter (memory and SQLite).

It drives the Storage port directly with a fake clock: submit, claim, report (success,
failure with or without retry, timeout, cancelled, handed back), stale reports, heartbeats,
crashes with rescue, cancel, requeue, prune, reopen and clock moves; and, on an adapter with
the optional `Prefetch` capability, claims ahead (reserve), start and release of reserved
jobs. After every step the storage must agree with the model, and the lifecycle invariants
must hold.
"""

from __future__ import annotations

import collections
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gigq_core.errors import GigQError, UserError
from gigq_core.plugins import make_plugin_manager, open_storage
from gigq_core.ports import Prefetch
from gigq_core.records import ErrorInfo, JobFilter, JobRecord, JobStatus, Outcome
from gigq_core.settings import DEFAULTS
from gigq_core.testing import FakeClock
from tests import strategies as gs

# A bound for the "ci" profile's longer runs (and their shrinking).
pytestmark = pytest.mark.timeout(900)

LEASE = 30.0
WORKER = "w1"
BOOM = ErrorInfo(type="ValueError", message="boom")
ACTIVE = ("pending", "reserved", "running")
BROKEN = ("failed", "cancelled", "timeout")
FINAL = ("completed", *BROKEN)
#: The functions of the machine's jobs; the worker takes only some of them ahead.
NOOP = "tests.jobs:noop"
OTHER = "tests.jobs:other"

# One plugin manager for every run: building one scans entry points.
PM = make_plugin_manager(load_entrypoints=False)


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
    function: str = NOOP
    status: str = "pending"
    attempts: int = 0
    handbacks: int = 0
    token: str | None = None
    lease_expires: datetime | None = None
    cancel_requested: bool = False
    #: When the job last became final (updated_at of a final job).
    final_at: datetime | None = None
    #: Execution records created for it (one per claim).
    claims: int = 0
    #: Its attempts when it was last reserved (a reservation never changes them).
    reserved_with: int | None = None


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
        #: Job id -> the token of the attempt our worker holds.
        self.held: dict[str, str] = {}
        #: Job id -> the token of a job our worker reserved (claimed ahead, not started).
        self.reserved: dict[str, str] = {}
        #: (job id, token) of attempts that no longer hold their job.
        self.stale: list[tuple[str, str]] = []
        #: Job id -> the upstream job whose end cancelled it (for revival by requeue).
        self.cancelled_by: dict[str, str] = {}
        self.seq = 0
        self.serial = 0

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
        job.lease_expires = None
        job.cancel_requested = False

    def reset(self, job: Model) -> None:
        job.status = "pending"
        job.attempts = 0
        job.handbacks = 0
        job.run_at = max(job.run_at, self.now())  # a schedule still ahead is kept
        job.final_at = None
        self.release(job)

    def ready(self) -> list[Model]:
        now = self.now()
        found = [
            j
            for j in self.jobs.values()
            if j.status == "pending"
            and j.run_at <= now
            and all(d in self.jobs and self.jobs[d].status == "completed" for d in j.deps)
        ]
        return sorted(found, key=lambda j: (-j.priority, j.seq))

    def ids(self) -> list[str]:
        """Every job id, in submit order."""
        return sorted(self.jobs, key=lambda i: self.jobs[i].seq)

    def held_ids(self) -> list[str]:
        """The ids of the jobs our worker holds, in submit order."""
        return sorted(self.held, key=lambda i: self.jobs[i].seq)

    def reserved_ids(self) -> list[str]:
        """The ids of the jobs our worker reserved, in submit order."""
        return sorted(self.reserved, key=lambda i: self.jobs[i].seq)

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
            assert stored.seq > 0

    # -- rules: submitting -------------------------------------------------------------------

    @rule(data=st.data())
    def submit(self, data: Any) -> None:
        existing = self.ids()
        deps = (
            data.draw(st.lists(st.sampled_from(existing), max_size=3, unique=True), label="deps")
            if existing
            else []
        )
        key = data.draw(gs.unique_keys, label="unique_key")
        self.insert([self.new_record(data, deps, key)])

    @rule(data=st.data())
    def submit_pair(self, data: Any) -> None:
        """Two jobs in one call; the second may depend on the first and share its key."""
        key = data.draw(gs.unique_keys, label="unique_key")
        first = self.new_record(data, [], key)
        existing = self.ids()
        deps = (
            data.draw(st.lists(st.sampled_from(existing), max_size=2, unique=True), label="deps")
            if existing
            else []
        )
        if data.draw(st.booleans(), label="depends on first"):
            deps.append(first.id)
        second_key = data.draw(st.sampled_from([None, key]), label="second key")
        self.insert([first, self.new_record(data, deps, second_key)])

    # -- rules: claiming and reporting -------------------------------------------------------

    @rule(limit=st.integers(min_value=1, max_value=3))
    def claim(self, limit: int) -> None:
        expected = [j.id for j in self.ready()[:limit]]
        now = self.now()

        claimed = self.storage.claim(WORKER, limit, now, LEASE)

        assert [r.id for r in claimed] == expected, "claim order or readiness differs"
        for record in claimed:
            job = self.jobs[record.id]
            job.status = "running"
            job.attempts += 1
            job.claims += 1
            job.cancel_requested = False
            job.lease_expires = now + timedelta(seconds=LEASE)
            assert record.status == JobStatus.RUNNING
            assert record.attempts == job.attempts
            assert record.worker_id == WORKER
            assert record.token
            assert record.token not in {t for _, t in self.stale}
            job.token = record.token
            self.held[record.id] = record.token

    # -- rules: claiming ahead (Prefetch) ----------------------------------------------------

    @precondition(lambda self: self.prefetch)
    @rule(
        # Mostly reserving (start 0): reserved jobs are what the rules below act on.
        start=st.sampled_from([0, 0, 0, 1, 2]),
        reserve=st.integers(min_value=0, max_value=3),
        functions=st.sampled_from([(NOOP, OTHER), (NOOP, OTHER), (NOOP,), (OTHER,), ()]),
    )
    def claim_ahead(self, start: int, reserve: int, functions: tuple[str, ...]) -> None:
        ready = self.ready()
        expected_started = [j.id for j in ready[:start]]
        expected_reserved = [j.id for j in ready[start:] if j.function in functions][:reserve]
        now = self.now()

        started, reserved = self.storage.claim_ahead(
            WORKER, start, reserve, now, LEASE, None, list(functions)
        )

        assert [r.id for r in started] == expected_started, "claim_ahead started other jobs"
        assert [r.id for r in reserved] == expected_reserved, "claim_ahead reserved other jobs"
        for record in started:
            job = self.jobs[record.id]
            job.status = "running"
            job.attempts += 1
            job.claims += 1
            job.cancel_requested = False
            job.lease_expires = now + timedelta(seconds=LEASE)
            assert record.status == JobStatus.RUNNING
            assert record.attempts == job.attempts
            assert record.started_at is not None
            assert record.token
            assert record.token not in {t for _, t in self.stale}
            job.token = record.token
            self.held[record.id] = record.token
        for record in reserved:
            job = self.jobs[record.id]
            job.status = "reserved"
            job.reserved_with = job.attempts
            job.lease_expires = now + timedelta(seconds=LEASE)
            assert record.status == JobStatus.RESERVED
            assert record.attempts == job.attempts, "a reservation counted an attempt"
            assert record.started_at is None
            assert record.token
            assert record.token not in {t for _, t in self.stale}
            assert record.token not in self.held.values()
            job.token = record.token
            self.reserved[record.id] = record.token

    def pick_reserved(self, data: Any) -> dict[str, str]:
        """Some of the reserved jobs, with their tokens, and one or two tokens that hold no
        reservation, of jobs not among them (which must be left alone): stale ones, forged
        ones of the other reserved jobs, and the tokens of running jobs (already started)."""
        chosen = data.draw(
            st.lists(st.sampled_from(self.reserved_ids()), min_size=1, unique=True),
            label="reserved",
        )
        sent = {job_id: self.reserved[job_id] for job_id in chosen}
        others = (
            list(self.stale)
            + [(i, f"forged-{i}") for i in self.reserved_ids()]
            + [(i, self.held[i]) for i in self.held_ids()]
        )
        others = [(i, t) for i, t in others if i not in sent]
        if others:
            for job_id, token in data.draw(
                st.lists(st.sampled_from(others), min_size=1, max_size=2), label="not reserved"
            ):
                sent[job_id] = token
        return sent

    @precondition(lambda self: self.reserved)
    @rule(data=st.data())
    def start_reserved(self, data: Any) -> None:
        sent = self.pick_reserved(data)
        expected = {i for i in sent if self.reserved.get(i) == sent[i]}
        # A stale token may be of a job pruned since: get() is None for it.
        before = {i: self.storage.get(i) for i in sent}
        now = self.now()

        # The worker hands back the records it holds; a job gone since is no longer held.
        held = [attrs.evolve(record, token=sent[i]) for i, record in before.items() if record]
        started = self.storage.start(WORKER, held, now)

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
            assert record.token == token
            assert record.started_at == now
            assert record.lease_expires_at == job.lease_expires
            self.held[record.id] = token
            [*_, execution] = self.storage.executions(record.id)
            assert (execution.status, execution.attempt) == ("running", job.attempts)
            assert execution.token == token
        for job_id in set(sent) - expected:
            assert self.storage.get(job_id) == before[job_id], "start changed a job not held"

    @precondition(lambda self: self.reserved)
    @rule(data=st.data())
    def release_reservations(self, data: Any) -> None:
        sent = self.pick_reserved(data)
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

    def finish(self, job_id: str, outcome: Outcome) -> Any:
        [transition] = self.storage.finish([outcome], self.now())
        assert transition is not None, f"{outcome.status} of a held attempt was fenced"
        assert transition.job.id == job_id
        return transition

    def fail(self, data: Any, status: str) -> None:
        job_id = data.draw(st.sampled_from(self.held_ids()), label="job")
        job = self.jobs[job_id]
        retry_at = None
        if job.attempts < job.max_attempts and data.draw(st.booleans(), label="retry"):
            retry_at = self.now() + timedelta(seconds=data.draw(gs.retry_delays, label="wait"))
        outcome = Outcome(
            job_id=job_id, token=self.held[job_id], status=status, error=BOOM, retry_at=retry_at
        )

        transition = self.finish(job_id, outcome)

        if retry_at is not None:
            self.release(job)
            job.status = "pending"
            job.run_at = retry_at
            assert transition.cancelled == ()
        else:
            self.end(job, status)
            assert {r.id for r in transition.cancelled} == self.cascade(job_id)
        assert transition.job.status == JobStatus(job.status)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def succeed(self, data: Any) -> None:
        job_id = data.draw(st.sampled_from(self.held_ids()), label="job")
        outcome = Outcome(
            job_id=job_id, token=self.held[job_id], status="completed", result='"done"'
        )

        transition = self.finish(job_id, outcome)

        self.end(self.jobs[job_id], "completed")
        assert transition.job.status == JobStatus.COMPLETED
        assert transition.job.result == '"done"'
        assert transition.cancelled == ()

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def fail_attempt(self, data: Any) -> None:
        """A failed attempt, retried if the worker would (attempts left) and chooses to."""
        self.fail(data, "failed")

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def time_out(self, data: Any) -> None:
        self.fail(data, "timeout")

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def report_cancelled(self, data: Any) -> None:
        job_id = data.draw(st.sampled_from(self.held_ids()), label="job")
        outcome = Outcome(job_id=job_id, token=self.held[job_id], status="cancelled")

        transition = self.finish(job_id, outcome)

        self.end(self.jobs[job_id], "cancelled")
        assert {r.id for r in transition.cancelled} == self.cascade(job_id)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def hand_back(self, data: Any) -> None:
        job_id = data.draw(st.sampled_from(self.held_ids()), label="job")
        outcome = Outcome(job_id=job_id, token=self.held[job_id], status="handed_back")

        transition = self.finish(job_id, outcome)

        job = self.jobs[job_id]
        self.release(job)
        job.status = "pending"
        job.run_at = self.now()
        if job.handbacks < 3:
            job.attempts -= 1
        job.handbacks += 1
        if job.attempts >= job.max_attempts:
            # The fourth hand-back on counts as an attempt; with none left the job ends
            # failed (docs/guarantees.md D4: restarts cannot loop it forever).
            self.end(job, "failed")
            assert {r.id for r in transition.cancelled} == self.cascade(job_id)
        else:
            assert transition.cancelled == ()
        assert transition.job.status == JobStatus(job.status)

    @precondition(
        lambda self: (
            self.stale or self.reserved or any(j.status == "running" for j in self.jobs.values())
        )
    )
    @rule(
        data=st.data(),
        kind=st.sampled_from(["completed", "failed", "timeout", "cancelled", "handed_back"]),
    )
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

    @rule(data=st.data())
    def heartbeat(self, data: Any) -> None:
        sent = {**self.held, **self.reserved}
        stale = [(i, t) for i, t in self.stale if i not in sent]
        if stale:
            for job_id, token in data.draw(
                st.lists(st.sampled_from(stale), max_size=2), label="stale in heartbeat"
            ):
                sent[job_id] = token
        now = self.now()

        reply = self.storage.heartbeat(WORKER, sent, now, LEASE)

        assert reply.lost == frozenset(
            i for i in sent if i not in self.held and i not in self.reserved
        )
        assert reply.cancel_requested == frozenset(
            i for i in self.held if self.jobs[i].cancel_requested
        )
        for job_id in [*self.held, *self.reserved]:
            self.jobs[job_id].lease_expires = now + timedelta(seconds=LEASE)

    def rescue_now(self, dead: bool = False) -> None:
        """A rescue sweep at the current time; `dead`: our worker is known dead."""
        now = self.now()
        expected = sorted(
            (
                j
                for j in self.jobs.values()
                if j.status in ("running", "reserved")
                and (dead or (j.lease_expires is not None and j.lease_expires < now))
            ),
            key=lambda j: j.seq,
        )

        transitions = self.storage.rescue(now, [WORKER] if dead else [])

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

    @rule()
    def rescue(self) -> None:
        self.rescue_now()

    @precondition(lambda self: self.held or self.reserved)
    @rule()
    def crash(self) -> None:
        """The worker dies: its tokens are forgotten, the leases run out, a sweep rescues."""
        self.held.clear()
        self.reserved.clear()
        self.clock.advance(LEASE + 1)
        self.rescue_now()
        assert not any(j.status in ("running", "reserved") for j in self.jobs.values())

    @precondition(lambda self: self.held or self.reserved)
    @rule()
    def rescue_dead_worker(self) -> None:
        """A rescuer finds our worker dead before its leases run out."""
        self.held.clear()
        self.reserved.clear()
        self.rescue_now(dead=True)
        assert not any(j.status in ("running", "reserved") for j in self.jobs.values())

    @rule(seconds=gs.clock_steps)
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    # -- rules: steering ---------------------------------------------------------------------

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def cancel(self, data: Any) -> None:
        job_id = data.draw(st.sampled_from(self.ids()), label="job")
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
        elif job.status == "running" and not job.cancel_requested:
            job.cancel_requested = True
            [transition] = transitions
            assert transition.job.status == JobStatus.RUNNING
            assert transition.job.cancel_requested
            assert transition.cancelled == ()
        elif job.status == "running":
            assert len(transitions) <= 1
        else:
            assert transitions == []

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

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def requeue(self, data: Any) -> None:
        job_id = data.draw(st.sampled_from(self.ids()), label="job")
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

    @rule(statuses=gs.prunable_statuses, back=st.sampled_from([-1, 0, 10, 40]))
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

    @rule()
    def reopen(self) -> None:
        self.storage.close()
        self.storage = self._open()
        assert isinstance(self.storage, Prefetch) == self.prefetch

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

    def statuses_match_the_model(self, records: dict[str, JobRecord]) -> None:
        assert set(records) == set(self.jobs), "stored jobs differ from the model"
        for record in records.values():
            job = self.jobs[record.id]
            assert record.status.value == job.status, (record.id, record.status, job.status)
            assert record.attempts == job.attempts, (record.id, record.attempts, job.attempts)

    def running_only_when_held(self, records: dict[str, JobRecord]) -> None:
        running = {r.id: r.token for r in records.values() if r.status == JobStatus.RUNNING}
        assert running == self.held, "a job runs that the worker does not hold (or not held)"

    def reserved_only_when_reserved(self, records: dict[str, JobRecord]) -> None:
        """A reserved job is one our worker reserved, under its token and lease, not
        started, its attempts as they were when it was reserved."""
        reserved = {r.id: r.token for r in records.values() if r.status == JobStatus.RESERVED}
        assert reserved == self.reserved, "a reserved job the worker did not reserve (or lost)"
        for job_id in reserved:
            record, job = records[job_id], self.jobs[job_id]
            assert record.started_at is None, record
            assert record.worker_id == WORKER, record
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


def machine_settings(examples: int) -> settings:
    """`examples` runs of up to 40 steps under the default profile; four times as many under
    the "ci" profile (HYPOTHESIS_PROFILE=ci)."""
    scale = 4 if settings.default.max_examples >= 500 else 1
    return settings(max_examples=examples * scale, stateful_step_count=40, deadline=None)


class MemoryLifecycle(LifecycleMachine):
    adapter = "memory"


class SqliteLifecycle(LifecycleMachine):
    adapter = "sqlite"


#: Adapter -> counts over every run of its machine, for the one-line summary.
TALLY: dict[str, collections.Counter[str]] = {}


def print_summary(adapter: str) -> None:
    """The one-line summary of the machine's runs on `adapter` (each ended with its ledger
    check, so a mismatch would have failed the run)."""
    tally = TALLY.pop(adapter, collections.Counter())
    states = ",".join(
        f"{s}={tally[s]}" for s in ("pending", "reserved", "running", *FINAL) if tally[s]
    )
    print(
        f"[lifecycle {adapter}] runs={tally['runs']} jobs={tally['jobs']} {states} "
        f"executions={tally['executions']} mismatches=0"
    )


class _Summarized:
    """Prints the adapter's one-line summary once its runs are over."""

    adapter = "memory"

    @classmethod
    def tearDownClass(cls) -> None:
        print_summary(cls.adapter)


# The in-memory adapter is cheap, so it gets more runs; SQLite writes a file per step.
class TestMemoryLifecycle(_Summarized, MemoryLifecycle.TestCase):  # type: ignore[misc,name-defined]
    adapter = "memory"
    settings = machine_settings(120)


class TestSqliteLifecycle(_Summarized, SqliteLifecycle.TestCase):  # type: ignore[misc,name-defined]
    adapter = "sqlite"
    settings = machine_settings(50)
