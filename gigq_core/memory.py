"""The in-memory storage adapter: a real implementation of the Storage port, for tests and
embedding. One store per `memory://NAME` per process; one lock around every operation."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from gigq_core.errors import DependencyCycleError, InvalidJobError, UnknownDependencyError
from gigq_core.graph import find_cycle, topological_order
from gigq_core.hookspecs import hookimpl
from gigq_core.records import (
    BROKEN_STATUSES,
    WORKER_LOST,
    Execution,
    HeartbeatReply,
    JobFilter,
    JobRecord,
    JobStatus,
    Outcome,
    Transition,
    WorkerInfo,
    WorkflowInfo,
    cascade_reason,
    handed_back,
)
from gigq_core.transfer import export_stream, plan_import, refuse_non_empty

#: States in which a job holds its unique key (and is not finished).
_ACTIVE = (JobStatus.PENDING, JobStatus.RESERVED, JobStatus.RUNNING)
#: States of a job a worker holds under a token (heartbeats renew their leases).
_HELD = (JobStatus.RESERVED, JobStatus.RUNNING)


class MemoryStorage:
    """Jobs in a dict, guarded by one lock."""

    def __init__(self, name: str = "") -> None:
        self.url = f"memory://{name}"
        self._lock = threading.Condition()
        self._jobs: dict[str, JobRecord] = {}
        self._cancelled_by: dict[str, str] = {}
        self._executions: dict[str, list[Execution]] = {}
        self._workers: dict[str, WorkerInfo] = {}
        self._kv: dict[tuple[str, str], str] = {}
        self._paused: set[str] = set()
        self._seq = 0
        self._version = 0

    # -- helpers (lock held) -----------------------------------------------------------------

    def _changed(self) -> None:
        self._version += 1
        self._lock.notify_all()

    def _dependents(self, job_id: str) -> list[JobRecord]:
        return sorted(
            (j for j in self._jobs.values() if job_id in j.dependencies), key=lambda j: j.seq
        )

    def _is_ready(self, job: JobRecord, now: datetime) -> bool:
        return (
            job.status is JobStatus.PENDING
            and job.run_at <= now
            and job.queue not in self._paused
            and self._deps_done(job)
        )

    def _deps_done(self, job: JobRecord) -> bool:
        return all(
            (dep := self._jobs.get(d)) is not None and dep.status is JobStatus.COMPLETED
            for d in job.dependencies
        )

    def _cascade(self, upstream: JobRecord, now: datetime) -> tuple[JobRecord, ...]:
        cancelled: list[JobRecord] = []
        todo = [upstream]
        while todo:
            parent = todo.pop(0)
            for child in self._dependents(parent.id):
                if child.status is not JobStatus.PENDING:
                    continue
                child = attrs.evolve(
                    child,
                    status=JobStatus.CANCELLED,
                    error=cascade_reason(parent.id, parent.name, parent.status.value),
                    updated_at=now,
                    completed_at=now,
                )
                self._jobs[child.id] = child
                self._cancelled_by[child.id] = parent.id
                cancelled.append(child)
                todo.append(child)
        return tuple(cancelled)

    def _end_execution(
        self,
        job: JobRecord,
        status: str,
        now: datetime,
        result: str | None = None,
        error: Any = None,
    ) -> None:
        runs = self._executions.get(job.id, [])
        for index in range(len(runs) - 1, -1, -1):
            if runs[index].token == job.token:
                runs[index] = attrs.evolve(
                    runs[index], status=status, completed_at=now, result=result, error=error
                )
                return

    # -- the port ----------------------------------------------------------------------------

    def insert(self, jobs: Sequence[JobRecord], now: datetime) -> list[str]:
        with self._lock:
            batch = {job.id: job for job in jobs}
            if len(batch) != len(jobs):
                raise InvalidJobError("two jobs in one submit have the same id")
            for job in jobs:
                if job.id in self._jobs:
                    raise InvalidJobError(f"a job with id '{job.id}' already exists")
            for job in jobs:
                for dep in job.dependencies:
                    if dep not in batch and dep not in self._jobs:
                        raise UnknownDependencyError(
                            f"job '{job.name}' depends on unknown job id '{dep}'"
                        )
            cycle = find_cycle({job.id: job.dependencies for job in jobs})
            if cycle:
                names = " -> ".join(batch[i].name for i in cycle)
                raise DependencyCycleError(f"the dependencies form a cycle: {names}")
            # Unique keys are decided in the order given; a later job with the key of an
            # earlier one in the same call deduplicates into it.
            alias: dict[str, str] = {}
            keys: dict[str, str] = {}
            for job in jobs:
                existing = self._holder(job)
                if existing is not None:
                    alias[job.id] = existing.id
                elif job.unique_key is not None and job.unique_key in keys:
                    alias[job.id] = keys[job.unique_key]
                elif job.unique_key is not None:
                    keys[job.unique_key] = job.id
            base = self._seq
            order = {job.id: index for index, job in enumerate(jobs)}
            # Stored dependencies-first, so a dependency's state is known when its dependent
            # is stored; seq still follows the order given.
            edges = {job.id: job.dependencies for job in jobs}
            for job_id in topological_order(list(batch), edges):
                job = batch[job_id]
                if job.id in alias:
                    continue
                deps = tuple(alias.get(d, d) for d in job.dependencies)
                record = attrs.evolve(
                    job,
                    dependencies=deps,
                    status=JobStatus.PENDING,
                    attempts=0,
                    seq=base + order[job.id] + 1,
                    created_at=now,
                    updated_at=now,
                    started_at=None,
                    completed_at=None,
                    worker_id=None,
                    token=None,
                    lease_expires_at=None,
                    result=None,
                    error=None,
                    cancel_requested=False,
                    handbacks=0,
                )
                broken = [self._jobs[d] for d in deps if self._jobs[d].status in BROKEN_STATUSES]
                if broken:
                    up = broken[0]
                    record = attrs.evolve(
                        record,
                        status=JobStatus.CANCELLED,
                        error=cascade_reason(up.id, up.name, up.status.value),
                        completed_at=now,
                    )
                    self._cancelled_by[record.id] = up.id
                self._jobs[record.id] = record
            self._seq = base + len(jobs)
            ids = [alias.get(job.id, job.id) for job in jobs]
            self._changed()
            return ids

    def _holder(self, job: JobRecord) -> JobRecord | None:
        if job.unique_key is None:
            return None
        holding = set(_ACTIVE)
        if job.unique_scope == "success":
            holding.add(JobStatus.COMPLETED)
        for other in self._jobs.values():
            if other.unique_key == job.unique_key and other.status in holding:
                return other
        return None

    def claim(
        self,
        worker_id: str,
        limit: int,
        now: datetime,
        lease: float,
        queues: Sequence[str] | None = None,
    ) -> list[JobRecord]:
        with self._lock:
            ready = self._ready(now, queues)
            return [self._start(job, worker_id, now, lease) for job in ready[: max(limit, 0)]]

    def _ready(self, now: datetime, queues: Sequence[str] | None) -> list[JobRecord]:
        """The ready jobs of `queues` (None: any), in claim order."""
        ready = [
            j
            for j in self._jobs.values()
            if (queues is None or j.queue in queues) and self._is_ready(j, now)
        ]
        ready.sort(key=lambda j: (-j.priority, j.seq))
        return ready

    def _start(
        self, job: JobRecord, worker_id: str, now: datetime, lease: float | None
    ) -> JobRecord:
        """Start an attempt of a ready or reserved job: running, the attempt counted, a
        running execution record. A fresh token and lease for a ready job; a reserved one
        keeps those of its reservation (`lease` None)."""
        # Never a start before a dependency's completion (the caller's clock reading may
        # predate it).
        ends = [self._jobs[d].completed_at for d in job.dependencies if d in self._jobs]
        started = max([now, *(end for end in ends if end is not None)])
        job = attrs.evolve(
            job,
            status=JobStatus.RUNNING,
            attempts=job.attempts + 1,
            token=uuid.uuid4().hex if lease is not None else job.token,
            worker_id=worker_id,
            started_at=started,
            lease_expires_at=(
                now + timedelta(seconds=lease) if lease is not None else job.lease_expires_at
            ),
            updated_at=now,
            cancel_requested=False,
        )
        self._jobs[job.id] = job
        assert job.token is not None
        self._executions.setdefault(job.id, []).append(
            Execution(
                id=str(uuid.uuid4()),
                job_id=job.id,
                attempt=job.attempts,
                worker_id=worker_id,
                token=job.token,
                status="running",
                started_at=started,
            )
        )
        return job

    def finish(self, outcomes: Sequence[Outcome], now: datetime) -> list[Transition | None]:
        with self._lock:
            results = [self._finish_one(outcome, now) for outcome in outcomes]
            self._changed()
            return results

    def _finish_one(self, outcome: Outcome, now: datetime) -> Transition | None:
        job = self._jobs.get(outcome.job_id)
        if job is None or job.status is not JobStatus.RUNNING or job.token != outcome.token:
            return None
        previous = job.status
        self._end_execution(job, outcome.status, now, outcome.result, outcome.error)
        common: dict[str, Any] = {
            "token": None,
            "lease_expires_at": None,
            "updated_at": now,
            "cancel_requested": False,
        }
        cancelled: tuple[JobRecord, ...] = ()
        if outcome.status == "completed":
            job = attrs.evolve(
                job,
                status=JobStatus.COMPLETED,
                result=outcome.result,
                error=None,
                completed_at=now,
                **common,
            )
            self._jobs[job.id] = job
        elif outcome.status == "handed_back":
            attempts, handbacks, spent = handed_back(job.attempts, job.handbacks, job.max_attempts)
            job = attrs.evolve(
                job,
                status=JobStatus.PENDING if spent is None else JobStatus.FAILED,
                attempts=attempts,
                handbacks=handbacks,
                run_at=now,
                error=job.error if spent is None else spent,
                completed_at=None if spent is None else now,
                **common,
            )
            self._jobs[job.id] = job
            if spent is not None:
                cancelled = self._cascade(job, now)
        elif outcome.status in ("failed", "timeout") and outcome.retry_at is not None:
            job = attrs.evolve(
                job,
                status=JobStatus.PENDING,
                run_at=outcome.retry_at,
                error=str(outcome.error) if outcome.error else outcome.status,
                **common,
            )
            self._jobs[job.id] = job
        elif outcome.status in ("failed", "timeout", "cancelled"):
            if outcome.error is not None:
                error = str(outcome.error)
            else:
                error = job.error if outcome.status == "cancelled" and job.error else outcome.status
            job = attrs.evolve(
                job,
                status=JobStatus(outcome.status),
                error=error,
                completed_at=now,
                **common,
            )
            self._jobs[job.id] = job
            cancelled = self._cascade(job, now)
        else:
            raise ValueError(f"unknown outcome status {outcome.status!r}")
        return Transition(job=job, previous=previous, cancelled=cancelled, error=outcome.error)

    def finish_and_claim(
        self,
        outcomes: Sequence[Outcome],
        now: datetime,
        worker_id: str,
        limit: int,
        lease: float,
        queues: Sequence[str] | None = None,
    ) -> tuple[list[Transition | None], list[JobRecord]]:
        with self._lock:  # re-entrant: one atomic step for both
            return self.finish(outcomes, now), self.claim(worker_id, limit, now, lease, queues)

    # -- prefetch (ports.Prefetch) ----------------------------------------------------------
    # A reserved job is stored here with the status RESERVED itself (an SQL store keeps it
    # running without `started_at`); it has a token, a worker and a lease, but its attempt is
    # counted only by `start`.

    def claim_ahead(
        self,
        worker_id: str,
        start: int,
        reserve: int,
        now: datetime,
        lease: float,
        queues: Sequence[str] | None,
        functions: Sequence[str],
    ) -> tuple[list[JobRecord], list[JobRecord]]:
        """Claim up to `start` ready jobs as `claim` does, then reserve up to `reserve` more
        of the ready jobs whose function is in `functions`, in claim order; one step."""
        with self._lock:
            ready = self._ready(now, queues)
            begin = max(start, 0)
            started = [self._start(job, worker_id, now, lease) for job in ready[:begin]]
            wanted = set(functions)
            ahead = [job for job in ready[begin:] if job.function in wanted]
            reserved = []
            for job in ahead[: max(reserve, 0)]:
                job = attrs.evolve(
                    job,
                    status=JobStatus.RESERVED,
                    token=uuid.uuid4().hex,
                    worker_id=worker_id,
                    started_at=None,
                    lease_expires_at=now + timedelta(seconds=lease),
                    updated_at=now,
                    cancel_requested=False,
                )
                self._jobs[job.id] = job
                reserved.append(job)
            return started, reserved

    def start(self, worker_id: str, jobs: Sequence[JobRecord], now: datetime) -> list[JobRecord]:
        """Start the jobs still reserved under their tokens; the others are left out
        (cancelled, rescued or released meanwhile)."""
        with self._lock:
            started = []
            for held in jobs:
                job = self._jobs.get(held.id)
                if job is None or job.status is not JobStatus.RESERVED or job.token != held.token:
                    continue
                started.append(self._start(job, worker_id, now, None))
            return started

    def release(self, held: Mapping[str, str], now: datetime) -> list[str]:
        """Put the jobs still reserved under the tokens of `held` back to pending, nothing
        counted; returns their ids."""
        with self._lock:
            released = []
            for job_id, token in held.items():
                job = self._jobs.get(job_id)
                if job is None or job.status is not JobStatus.RESERVED or job.token != token:
                    continue
                self._unreserve(job, now)
                released.append(job_id)
            if released:
                self._changed()
            return released

    def _unreserve(self, job: JobRecord, now: datetime) -> JobRecord:
        """A reserved job pending again as it was before its reservation (attempts,
        hand-backs, error and run_at unchanged)."""
        job = attrs.evolve(
            job,
            status=JobStatus.PENDING,
            token=None,
            worker_id=None,
            lease_expires_at=None,
            updated_at=now,
        )
        self._jobs[job.id] = job
        return job

    def heartbeat(
        self, worker_id: str, held: Mapping[str, str], now: datetime, lease: float
    ) -> HeartbeatReply:
        with self._lock:
            lost, cancel = set(), set()
            for job_id, token in held.items():
                job = self._jobs.get(job_id)
                if job is None or job.status not in _HELD or job.token != token:
                    lost.add(job_id)
                    continue
                self._jobs[job_id] = attrs.evolve(
                    job, lease_expires_at=now + timedelta(seconds=lease)
                )
                if job.cancel_requested:
                    cancel.add(job_id)
            worker = self._workers.get(worker_id)
            if worker is not None:
                self._workers[worker_id] = attrs.evolve(worker, last_heartbeat=now)
            return HeartbeatReply(lost=frozenset(lost), cancel_requested=frozenset(cancel))

    def rescue(self, now: datetime, worker_ids: Sequence[str] = ()) -> list[Transition]:
        with self._lock:
            dead = set(worker_ids)
            for worker_id in dead:
                worker = self._workers.get(worker_id)
                if worker is not None and worker.stopped_at is None:
                    self._workers[worker_id] = attrs.evolve(worker, stopped_at=now)
            lost = sorted(
                (
                    j
                    for j in self._jobs.values()
                    if j.status in _HELD
                    and (
                        (j.lease_expires_at is not None and j.lease_expires_at < now)
                        or j.worker_id in dead
                    )
                ),
                key=lambda j: j.seq,
            )
            transitions = []
            for job in lost:
                if job.status is JobStatus.RESERVED:
                    # Never started: pending again, no attempt or hand-back counted.
                    job = self._unreserve(job, now)
                    transitions.append(Transition(job=job, previous=JobStatus.RESERVED))
                    continue
                self._end_execution(job, "lost", now, error=WORKER_LOST)
                final = job.attempts >= job.max_attempts
                job = attrs.evolve(
                    job,
                    status=JobStatus.FAILED if final else JobStatus.PENDING,
                    error=WORKER_LOST.message,
                    token=None,
                    lease_expires_at=None,
                    updated_at=now,
                    completed_at=now if final else None,
                    run_at=job.run_at if final else now,
                    cancel_requested=False,
                )
                self._jobs[job.id] = job
                cancelled = self._cascade(job, now) if final else ()
                transitions.append(
                    Transition(
                        job=job,
                        previous=JobStatus.RUNNING,
                        cancelled=cancelled,
                        error=WORKER_LOST,
                    )
                )
            if transitions:
                self._changed()
            return transitions

    def cancel(self, job_ids: Sequence[str], now: datetime, reason: str) -> list[Transition]:
        with self._lock:
            transitions = []
            for job_id in job_ids:
                job = self._jobs.get(job_id)
                if job is None:
                    continue
                if job.status in (JobStatus.PENDING, JobStatus.RESERVED):
                    # A reserved job never started: it ends at once, like a pending one.
                    previous = job.status
                    job = attrs.evolve(
                        job,
                        status=JobStatus.CANCELLED,
                        error=reason,
                        updated_at=now,
                        completed_at=now,
                        token=None,
                        lease_expires_at=None,
                        worker_id=None if previous is JobStatus.RESERVED else job.worker_id,
                    )
                    self._jobs[job_id] = job
                    self._cancelled_by.pop(job_id, None)
                    transitions.append(
                        Transition(job=job, previous=previous, cancelled=self._cascade(job, now))
                    )
                elif job.status is JobStatus.RUNNING and not job.cancel_requested:
                    job = attrs.evolve(job, cancel_requested=True, error=reason, updated_at=now)
                    self._jobs[job_id] = job
                    transitions.append(Transition(job=job, previous=JobStatus.RUNNING))
            self._changed()
            return transitions

    def requeue(self, job_ids: Sequence[str], now: datetime) -> list[Transition]:
        with self._lock:
            transitions = []
            for job_id in job_ids:
                job = self._jobs.get(job_id)
                if job is None or job.status not in BROKEN_STATUSES:
                    continue
                previous = job.status
                if not self._reset_unblocked([job_id], now):
                    continue
                revived: list[str] = []
                frontier = [job_id]
                while frontier:
                    children = [
                        child_id
                        for child_id, by in sorted(self._cancelled_by.items())
                        if by in frontier and self._jobs[child_id].status is JobStatus.CANCELLED
                    ]
                    frontier = self._reset_unblocked(children, now) if children else []
                    revived.extend(frontier)
                transitions.append(
                    Transition(
                        job=self._jobs[job_id],
                        previous=previous,
                        revived=tuple(
                            sorted((self._jobs[i] for i in revived), key=lambda j: j.seq)
                        ),
                    )
                )
            self._changed()
            return transitions

    def _reset_unblocked(self, job_ids: Sequence[str], now: datetime) -> list[str]:
        """Reset the jobs that may run again; returns them, in seq order.

        A job with a dependency still failed, timed out or cancelled would wait forever, so
        it stays cancelled, naming that dependency (requeueing the dependency revives it).
        A job whose unique key an active job holds is left as it is.
        """
        jobs = sorted((self._jobs[i] for i in job_ids), key=lambda j: j.seq)
        held = {
            j.unique_key
            for j in self._jobs.values()
            if j.unique_key is not None and j.status in _ACTIVE
        }
        free = []
        for job in jobs:
            if job.unique_key is not None and job.unique_key in held:
                continue
            broken = [
                self._jobs[d]
                for d in job.dependencies
                if d in self._jobs and self._jobs[d].status in BROKEN_STATUSES
            ]
            if broken:
                up = broken[0]
                if job.status is JobStatus.CANCELLED:
                    self._jobs[job.id] = attrs.evolve(
                        job, error=cascade_reason(up.id, up.name, up.status.value), updated_at=now
                    )
                    self._cancelled_by[job.id] = up.id
                continue
            if job.unique_key is not None:
                held.add(job.unique_key)
            self._cancelled_by.pop(job.id, None)
            self._reset(job, now)
            free.append(job.id)
        return free

    def _reset(self, job: JobRecord, now: datetime) -> JobRecord:
        job = attrs.evolve(
            job,
            status=JobStatus.PENDING,
            attempts=0,
            handbacks=0,
            result=None,
            error=None,
            worker_id=None,
            token=None,
            lease_expires_at=None,
            started_at=None,
            completed_at=None,
            cancel_requested=False,
            # A schedule still in the future is kept.
            run_at=max(job.run_at, now),
            updated_at=now,
        )
        self._jobs[job.id] = job
        return job

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            return self._jobs.get(job_id)

    def get_many(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        with self._lock:
            return {i: self._jobs[i] for i in job_ids if i in self._jobs}

    def results(self, job_ids: Sequence[str], max_bytes: int) -> tuple[int, dict[str, str]]:
        with self._lock:
            found = {i: self._jobs[i].result for i in set(job_ids) if i in self._jobs}
        stored = {i: result for i, result in found.items() if result is not None}
        total = sum(len(r) if r.isascii() else len(r.encode("utf-8")) for r in stored.values())
        return (total, stored) if total <= max_bytes else (total, {})

    def executions(self, job_id: str) -> list[Execution]:
        with self._lock:
            return list(self._executions.get(job_id, ()))

    def _matches(self, job: JobRecord, where: JobFilter) -> bool:
        return (
            (where.statuses is None or job.status in where.statuses)
            and (where.queues is None or job.queue in where.queues)
            and (where.name is None or job.name == where.name)
            and (where.workflow_id is None or job.workflow_id == where.workflow_id)
            and (where.unique_key is None or job.unique_key == where.unique_key)
            and (where.updated_before is None or job.updated_at < where.updated_before)
            and (where.updated_after is None or job.updated_at >= where.updated_after)
        )

    def list_jobs(
        self, where: JobFilter, limit: int = 100, offset: int = 0, order: str = "newest"
    ) -> list[JobRecord]:
        with self._lock:
            found = [j for j in self._jobs.values() if self._matches(j, where)]
        if order == "newest":
            found.sort(key=lambda j: -j.seq)
        elif order == "oldest":
            found.sort(key=lambda j: j.seq)
        elif order == "priority":
            found.sort(key=lambda j: (-j.priority, j.seq))
        else:
            raise ValueError(f"unknown order {order!r}")
        return found[offset : offset + limit]

    def count(self, where: JobFilter) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._lock:
            for job in self._jobs.values():
                if self._matches(job, where):
                    counts[job.status.value] = counts.get(job.status.value, 0) + 1
        return counts

    def queue_counts(self) -> dict[str, dict[str, int]]:
        with self._lock:
            counts: dict[str, dict[str, int]] = {}
            for job in self._jobs.values():
                per = counts.setdefault(job.queue, {})
                per[job.status.value] = per.get(job.status.value, 0) + 1
            return dict(sorted(counts.items()))

    def find_ids(self, prefix: str, limit: int = 2) -> list[str]:
        with self._lock:
            return sorted(i for i in self._jobs if i.startswith(prefix))[:limit]

    def next_due(self, now: datetime, queues: Sequence[str] | None = None) -> datetime | None:
        with self._lock:
            due = [
                j.run_at
                for j in self._jobs.values()
                if j.status is JobStatus.PENDING
                and (queues is None or j.queue in queues)
                and j.queue not in self._paused
                and self._deps_done(j)
            ]
        return min(due, default=None)

    def wait_for_work(self, timeout: float) -> bool:
        with self._lock:
            version = self._version
            return self._lock.wait_for(lambda: self._version != version, timeout=timeout)

    def list_workflows(self, limit: int = 100) -> list[WorkflowInfo]:
        with self._lock:
            flows: dict[str, dict[str, Any]] = {}
            for job in sorted(self._jobs.values(), key=lambda j: j.seq):
                if job.workflow_id is None:
                    continue
                flow = flows.setdefault(
                    job.workflow_id,
                    {"name": job.workflow_name or "", "created": job.created_at, "seq": job.seq},
                )
                counts = flow.setdefault("counts", {})
                counts[job.status.value] = counts.get(job.status.value, 0) + 1
        ordered = sorted(flows.items(), key=lambda item: -item[1]["seq"])
        return [
            WorkflowInfo(id=i, name=f["name"], created_at=f["created"], counts=f["counts"])
            for i, f in ordered[:limit]
        ]

    def register_worker(self, info: WorkerInfo) -> None:
        with self._lock:
            self._workers[info.id] = attrs.evolve(info, current_jobs=())

    def deregister_worker(self, worker_id: str, now: datetime) -> None:
        with self._lock:
            worker = self._workers.get(worker_id)
            if worker is not None:
                self._workers[worker_id] = attrs.evolve(worker, stopped_at=now)

    def list_workers(self, since: datetime | None = None) -> list[WorkerInfo]:
        with self._lock:
            running: dict[str, list[str]] = {}
            for job in sorted(self._jobs.values(), key=lambda j: j.seq):
                if job.status in _HELD and job.worker_id:
                    running.setdefault(job.worker_id, []).append(job.id)
            return [
                attrs.evolve(w, current_jobs=tuple(running.get(w.id, ())))
                for w in sorted(self._workers.values(), key=lambda w: w.started_at)
                if w.stopped_at is None or (since is not None and w.stopped_at >= since)
            ]

    def set_queue_paused(self, queue: str, paused: bool) -> None:
        with self._lock:
            if paused:
                self._paused.add(queue)
            else:
                self._paused.discard(queue)
            self._changed()

    def paused_queues(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._paused)

    def prune(self, before: datetime, statuses: Sequence[str]) -> int:
        with self._lock:
            wanted = {JobStatus(s) for s in statuses}
            needed = {
                dep for j in self._jobs.values() if not j.status.is_final for dep in j.dependencies
            }
            doomed = [
                j.id
                for j in self._jobs.values()
                if j.status in wanted and j.updated_at < before and j.id not in needed
            ]
            for job_id in doomed:
                del self._jobs[job_id]
                self._executions.pop(job_id, None)
                self._cancelled_by.pop(job_id, None)
            return len(doomed)

    def kv_get(self, namespace: str, key: str) -> str | None:
        with self._lock:
            return self._kv.get((namespace, key))

    def kv_set(self, namespace: str, key: str, value: str | None) -> None:
        with self._lock:
            if value is None:
                self._kv.pop((namespace, key), None)
            else:
                self._kv[(namespace, key)] = value

    def kv_items(self, namespace: str) -> dict[str, str]:
        with self._lock:
            return {k: v for (ns, k), v in sorted(self._kv.items()) if ns == namespace}

    # -- capabilities ------------------------------------------------------------------------

    def export(self) -> Iterator[dict[str, Any]]:
        """The store as a stream of JSON-able items (see gigq_core.transfer), from one
        snapshot taken when the iteration starts."""
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: j.seq)
            rows = [
                (j, self._cancelled_by.get(j.id), tuple(self._executions.get(j.id, ())))
                for j in jobs
            ]
            kv = [(ns, key, value) for (ns, key), value in sorted(self._kv.items())]
            paused = sorted(self._paused)
        yield from export_stream(rows, kv, paused)

    def import_(
        self, items: Iterable[Mapping[str, Any]], now: datetime | None = None
    ) -> dict[str, int]:
        """Store an export exactly, atomically, into this empty store; counts per kind.

        Refused (TransferError) when the store holds any job. Running jobs are imported as
        a rescue at `now` (default: the current time) leaves them (see gigq_core.transfer).
        """
        plan = plan_import(items, now or datetime.now(UTC))
        with self._lock:
            refuse_non_empty(self.url, len(self._jobs))
            for planned in plan.jobs:
                job = planned.record
                self._jobs[job.id] = job
                if planned.cancelled_by is not None:
                    self._cancelled_by[job.id] = planned.cancelled_by
                self._seq = max(self._seq, job.seq)
            for execution in plan.executions:
                self._executions.setdefault(execution.job_id, []).append(execution)
            for namespace, key, value in plan.kv:
                self._kv[(namespace, key)] = value
            self._paused.update(plan.paused)
            self._changed()
        return plan.counts()

    def close(self) -> None:
        """Nothing to release: the store lives as long as the process (per name)."""


_STORES: dict[str, MemoryStorage] = {}
_STORES_LOCK = threading.Lock()


def open_memory(url: str) -> MemoryStorage:
    """The process's store for `memory://NAME` (an empty name gets a fresh private store)."""
    name = url.split("://", 1)[1].split("?", 1)[0]
    if not name:
        return MemoryStorage("")
    with _STORES_LOCK:
        if name not in _STORES:
            _STORES[name] = MemoryStorage(name)
        return _STORES[name]


@hookimpl(trylast=True)
def gigq_storage(url: str, options: dict[str, Any]) -> MemoryStorage | None:
    """Answer `memory://NAME` URLs."""
    if url.startswith("memory://"):
        return open_memory(url)
    return None


__all__ = ["MemoryStorage", "open_memory"]
