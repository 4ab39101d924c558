"""State transitions of running jobs: claim, finish, heartbeat, rescue, cancel.

Each function runs inside one write transaction opened by the caller (SQLite: BEGIN
IMMEDIATE, so what it reads stays true until it commits; PostgreSQL: rows are locked
before they are read for a decision). Every UPDATE still repeats its condition
(`status = 'running' AND token = ...`), so the rules live in SQL too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from gigq_core.errors import StorageError
from gigq_core.records import (
    BROKEN_STATUSES,
    WORKER_LOST,
    HeartbeatReply,
    JobRecord,
    JobStatus,
    Outcome,
    Transition,
    UnreadableJob,
    cascade_reason,
    handed_back,
)
from gigq_sql.connection import Connection
from gigq_sql.dialect import Claim, Dialect, EndedAttempt
from gigq_sql.rows import jobs_from_rows, jobs_with_dependencies, load_jobs

OUTCOME_STATUSES = frozenset({"completed", "failed", "timeout", "cancelled", "handed_back"})

# One statement for every way an attempt ends; the new values are computed in Python from
# the row read in the same transaction.
_END_ATTEMPT = """
UPDATE jobs SET status = {p}, attempts = {p}, handbacks = {p}, run_at = {p}, result = {p},
    error = {p}, completed_at = {p}, updated_at = {p}, token = NULL, lease_expires_at = NULL,
    cancel_requested = {false}
WHERE id = {p} AND {plus}status = 'running' AND token = {p}
"""

_CASCADE = """
UPDATE jobs SET status = 'cancelled', error = {p}, cancelled_by = {p}, completed_at = {p},
    updated_at = {p}
WHERE {dependent_of} AND {plus}status = 'pending'
RETURNING {job_select}
"""

_SELECT_ATTEMPTS = """
SELECT {job_select_with_dependencies} FROM jobs WHERE id {any} ORDER BY id{for_update}
"""

_EXPIRED = """
SELECT {job_select} FROM jobs{indexed_running}
WHERE status = 'running' AND (lease_expires_at < {p} OR worker_id {any})
ORDER BY seq{skip_locked}
"""

_REPLAYED = """
SELECT job_id, token, status FROM job_executions
WHERE job_id {any} AND token {any} AND completed_at IS NOT NULL
"""


def _log(d: Dialect) -> logging.Logger:
    return logging.getLogger(f"gigq.{d.name}")


def claim_jobs(
    conn: Connection,
    d: Dialect,
    worker_id: str,
    limit: int,
    now: datetime,
    lease: float,
    queues: Sequence[str] | None,
    reserve_functions: Sequence[str] | None = None,
) -> list[JobRecord]:
    """Claim up to `limit` ready jobs, highest priority first (with `reserve_functions`:
    reserve them instead, among the jobs of those functions; see ports.Prefetch).

    A claimed row that cannot be read ends failed (`fail_unreadable`) and the claim goes on
    for the slots it took (each round fails at least one row, so this ends): the valid jobs
    behind it run, and a worker in burst mode does not take an empty claim for an empty
    queue."""
    claim = Claim(
        worker_id=worker_id,
        now=now,
        lease_end=now + timedelta(seconds=lease),
        queues=None if queues is None else tuple(queues),
        reserve_functions=None if reserve_functions is None else tuple(reserve_functions),
    )
    jobs: list[JobRecord] = []
    while len(jobs) < limit:
        rows = d.claim_rows(conn, claim, limit - len(jobs))
        unreadable = 0
        for job in jobs_from_rows(conn, d, rows):
            if isinstance(job, UnreadableJob):
                fail_unreadable(conn, d, job, now)
                unreadable += 1
            else:
                jobs.append(job)
        if not unreadable:
            break
    jobs.sort(key=lambda job: (-job.priority, job.seq))
    return jobs


def start_jobs(
    conn: Connection, d: Dialect, jobs: Sequence[JobRecord], now: datetime
) -> list[JobRecord]:
    """Start reserved jobs still held under their tokens; see ports.Prefetch.start. The
    records are the reserved ones with what the start changed (not read back: a start is
    on every job's path)."""
    by_id = {job.id: job for job in jobs}
    updated = d.stored_time(now)
    return [
        attrs.evolve(
            by_id[job_id],
            status=JobStatus.RUNNING,
            attempts=int(attempts),
            started_at=d.read_time("started_at", started_at),
            updated_at=updated,
        )
        for job_id, attempts, started_at in d.start_rows(conn, jobs, now)
    ]


_RELEASE_RESERVED = """
UPDATE jobs SET status = 'pending', token = NULL, worker_id = NULL, lease_expires_at = NULL,
    updated_at = {p}, cancel_requested = {false}
WHERE id = {p} AND status = 'running' AND token = {p} AND started_at IS NULL
"""


def release_jobs(conn: Connection, d: Dialect, held: Mapping[str, str], now: datetime) -> list[str]:
    """Hand reserved jobs back to pending, nothing counted; the ids released."""
    sql = d.render(_RELEASE_RESERVED)
    ts = d.time(now)
    return [
        job_id for job_id, token in held.items() if conn.execute(sql, (ts, job_id, token)).rowcount
    ]


def fail_unreadable(
    conn: Connection, d: Dialect, job: UnreadableJob, now: datetime, token: str | None = None
) -> None:
    """End the running job `job` stands in for as failed, with its dependents, and report
    it once at ERROR (`token`: only while that attempt holds it).

    Left running or pending, such a row would be claimed or rescued again and again, first
    in line each time, and starve the jobs behind it."""
    if not d.fail_running(conn, job.seq, job.error or "", now, token):
        return
    cascade(conn, d, job.id, job.name, JobStatus.FAILED.value, now)
    _log(d).error(
        "job %r cannot be run: its row cannot be read (%s); it is marked failed, fix or"
        " delete its row",
        job.id,
        job.reason,
    )


def finish_outcomes(
    conn: Connection, d: Dialect, outcomes: Sequence[Outcome], now: datetime, attempt: int = 0
) -> list[Transition | None]:
    """Apply attempt outcomes (fenced by token) with releases and cascades; see Storage.

    The jobs are read once (and locked, where the dialect locks rows); their new records
    are built from that read and the values written, not read back. On a retry (`attempt`
    > 0) an outcome whose attempt already ended the same way (its execution record says
    so) was applied by the try whose commit was not acknowledged: it gets a Transition
    again (without its cascade), never a second application.
    """
    for outcome in outcomes:
        if outcome.status not in OUTCOME_STATUSES:
            raise ValueError(f"unknown outcome status {outcome.status!r}")
    ids = sorted({o.job_id for o in outcomes})
    rows = conn.execute(d.render(_SELECT_ATTEMPTS), (d.ids(ids),)).fetchall()
    before = {job.id: job for job in jobs_with_dependencies(d, rows)}
    handled: set[str] = set()
    applied: list[tuple[int, Outcome, JobRecord]] = []
    job_rows: list[tuple[Any, ...]] = []
    ended: list[EndedAttempt] = []
    completed: list[str] = []
    broken: list[tuple[int, JobRecord, str]] = []
    for index, outcome in enumerate(outcomes):
        job = before.get(outcome.job_id)
        if job is None or job.id in handled:
            continue
        if isinstance(job, UnreadableJob):  # changed by hand while it ran
            fail_unreadable(conn, d, job, now, outcome.token)
            handled.add(job.id)
            continue
        if job.status is not JobStatus.RUNNING or job.token != outcome.token:
            continue
        handled.add(job.id)
        status, attempts, handbacks, run_at, result, error, completed_at = _ended(job, outcome, now)
        after = attrs.evolve(
            job,
            status=status,
            attempts=attempts,
            handbacks=handbacks,
            run_at=d.stored_time(run_at),
            result=result,
            error=error,
            completed_at=None if completed_at is None else d.stored_time(completed_at),
            updated_at=d.stored_time(now),
            token=None,
            lease_expires_at=None,
            cancel_requested=False,
        )
        applied.append((index, outcome, after))
        job_rows.append(
            (
                status.value,
                attempts,
                handbacks,
                d.time(run_at),
                result,
                error,
                d.time_opt(completed_at),
                d.time(now),
                job.id,
                outcome.token,
            )
        )
        ended.append((job, outcome.status, outcome.result, outcome.error))
        if status is JobStatus.COMPLETED:
            completed.append(job.id)
        elif status in BROKEN_STATUSES:
            broken.append((index, job, status.value))
    results: list[Transition | None] = [None] * len(outcomes)
    if attempt > 0:
        _replayed(conn, d, outcomes, results, handled)
    if not applied:
        return results
    changed = conn.executemany(d.render(_END_ATTEMPT), job_rows).rowcount
    if changed != len(job_rows):
        raise StorageError("a job changed under a write lock; the transaction was rolled back")
    d.end_executions(conn, ended, now)
    if completed:
        d.release(conn, completed)
    cascaded = {
        index: cascade(conn, d, job.id, job.name, status, now) for index, job, status in broken
    }
    for index, outcome, after in applied:
        results[index] = Transition(
            job=after,
            previous=JobStatus.RUNNING,
            cancelled=tuple(cascaded.get(index, ())),
            error=outcome.error,
        )
    return results


def _replayed(
    conn: Connection,
    d: Dialect,
    outcomes: Sequence[Outcome],
    results: list[Transition | None],
    handled: set[str],
) -> None:
    """Fill in Transitions for outcomes an unacknowledged earlier try already applied."""
    waiting = [(i, o) for i, o in enumerate(outcomes) if o.job_id not in handled]
    if not waiting:
        return
    rows = conn.execute(
        d.render(_REPLAYED),
        (d.ids(o.job_id for _, o in waiting), d.ids(o.token for _, o in waiting)),
    ).fetchall()
    done = {(job_id, token): status for job_id, token, status in rows}
    jobs = load_jobs(conn, d, [o.job_id for _, o in waiting])
    seen: set[str] = set()
    for index, outcome in waiting:
        if outcome.job_id in seen or outcome.job_id not in jobs:
            continue
        if done.get((outcome.job_id, outcome.token)) == outcome.status:
            seen.add(outcome.job_id)
            results[index] = Transition(
                job=jobs[outcome.job_id], previous=JobStatus.RUNNING, error=outcome.error
            )


def _ended(
    job: JobRecord, outcome: Outcome, now: datetime
) -> tuple[JobStatus, int, int, datetime, str | None, str | None, datetime | None]:
    """The job's new (status, attempts, handbacks, run_at, result, error, completed_at)."""
    error = str(outcome.error) if outcome.error is not None else None
    run_at, attempts, handbacks = job.run_at, job.attempts, job.handbacks
    result: str | None = job.result
    completed_at: datetime | None = now
    if outcome.status == "completed":
        status, result, error = JobStatus.COMPLETED, outcome.result, None
    elif outcome.status == "handed_back":
        run_at = now
        attempts, handbacks, spent = handed_back(attempts, handbacks, job.max_attempts)
        if spent is None:
            status, error, completed_at = JobStatus.PENDING, job.error, None
        else:
            status, error = JobStatus.FAILED, spent
    elif outcome.status in ("failed", "timeout") and outcome.retry_at is not None:
        status, run_at, completed_at = JobStatus.PENDING, outcome.retry_at, None
        error = error or outcome.status
    else:
        status = JobStatus(outcome.status)
        if error is None:
            # A cancel request already recorded its reason on the job.
            error = job.error if status is JobStatus.CANCELLED and job.error else outcome.status
    return status, attempts, handbacks, run_at, result, error, completed_at


def cascade(
    conn: Connection, d: Dialect, job_id: str, name: str, status: str, now: datetime
) -> list[JobRecord]:
    """Cancel the pending dependents of job `job_id` (which ended `status`), transitively.

    Each dependent's error names the dependency whose end cancelled it, and `cancelled_by`
    records that dependency, so requeueing it revives exactly these.
    """
    ts = d.time(now)
    sql = d.render(_CASCADE)
    cancelled: list[JobRecord] = []
    frontier = [(job_id, name, status)]
    while frontier:
        found: list[Any] = []
        for upstream, upstream_name, ended in frontier:
            reason = cascade_reason(upstream, upstream_name, ended)
            rows = conn.execute(sql, (reason, upstream, ts, ts, upstream)).fetchall()
            found.extend(sorted(rows, key=lambda row: row[0]))
        jobs = jobs_from_rows(conn, d, found)
        frontier = [(job.id, job.name, JobStatus.CANCELLED.value) for job in jobs]
        # A stand-in for a row that cannot be read says nothing true about the job: its
        # row is cancelled all the same, but it is not reported.
        cancelled.extend(job for job in jobs if not isinstance(job, UnreadableJob))
    return cancelled


def renew_leases(
    conn: Connection,
    d: Dialect,
    worker_id: str,
    held: Mapping[str, str],
    now: datetime,
    lease: float,
) -> HeartbeatReply:
    """Renew the leases of the jobs still held under their tokens; report the others."""
    conn.execute(
        d.render("UPDATE workers SET last_heartbeat = {p} WHERE id = {p}"), (d.time(now), worker_id)
    )
    if not held:
        return HeartbeatReply()
    alive = d.renew(conn, held, now + timedelta(seconds=lease))
    return HeartbeatReply(
        lost=frozenset(held.keys() - alive.keys()),
        cancel_requested=frozenset(job_id for job_id, cancel in alive.items() if cancel),
    )


def rescue_jobs(
    conn: Connection, d: Dialect, now: datetime, worker_ids: Sequence[str]
) -> list[Transition]:
    """Return running jobs with an expired lease, or of dead workers, to pending (or fail)."""
    ts = d.time(now)
    if worker_ids:
        conn.execute(
            d.render("UPDATE workers SET stopped_at = {p} WHERE stopped_at IS NULL AND id {any}"),
            (ts, d.ids(worker_ids)),
        )
    rows = conn.execute(d.render(_EXPIRED), (ts, d.ids(worker_ids))).fetchall()
    lost = []
    for job in jobs_from_rows(conn, d, rows):
        if isinstance(job, UnreadableJob):
            fail_unreadable(conn, d, job, now)
        else:
            lost.append(job)
    reserved = [job for job in lost if job.status is JobStatus.RESERVED]
    if reserved:
        released = set(release_jobs(conn, d, {job.id: job.token or "" for job in reserved}, now))
        lost = [job for job in lost if job.status is not JobStatus.RESERVED]
        reserved = [job for job in reserved if job.id in released]
    if not lost and not reserved:
        return []
    job_rows = []
    for job in lost:
        final = job.attempts >= job.max_attempts
        status = JobStatus.FAILED if final else JobStatus.PENDING
        run_at = job.run_at if final else now
        job_rows.append(
            (
                status.value,
                job.attempts,
                job.handbacks,
                d.time(run_at),
                job.result,
                WORKER_LOST.message,
                ts if final else None,
                ts,
                job.id,
                job.token,
            )
        )
    if job_rows:
        conn.executemany(d.render(_END_ATTEMPT), job_rows)
        d.end_executions(conn, [(job, "lost", None, WORKER_LOST) for job in lost], now)
    cascaded = {
        job.id: cascade(conn, d, job.id, job.name, JobStatus.FAILED.value, now)
        for job in lost
        if job.attempts >= job.max_attempts
    }
    after = load_jobs(conn, d, [job.id for job in (*lost, *reserved)])
    transitions = [
        Transition(
            job=after[job.id],
            previous=JobStatus.RUNNING,
            cancelled=tuple(cascaded.get(job.id, ())),
            error=WORKER_LOST,
        )
        for job in lost
    ]
    # A reservation never started: it goes back as it was, nothing counted.
    transitions += [Transition(job=after[job.id], previous=JobStatus.RESERVED) for job in reserved]
    transitions.sort(key=lambda t: t.job.seq)
    return transitions


_LOCK_JOB = "SELECT {job_select} FROM jobs WHERE id = {p}{for_update}"
_CANCEL_PENDING = """
UPDATE jobs SET status = 'cancelled', error = {p}, completed_at = {p}, updated_at = {p},
    cancelled_by = NULL
WHERE id = {p} AND status = 'pending'
"""
_CANCEL_RESERVED = """
UPDATE jobs SET status = 'cancelled', error = {p}, completed_at = {p}, updated_at = {p},
    cancelled_by = NULL, token = NULL, lease_expires_at = NULL
WHERE id = {p} AND status = 'running' AND started_at IS NULL
"""
_REQUEST_CANCEL = """
UPDATE jobs SET cancel_requested = {true}, error = {p}, updated_at = {p}
WHERE id = {p} AND status = 'running'
"""


def cancel_jobs(
    conn: Connection, d: Dialect, job_ids: Sequence[str], now: datetime, reason: str
) -> list[Transition]:
    """Cancel pending jobs (with cascade) and ask running ones to stop; see Storage."""
    ts = d.time(now)
    changes: list[tuple[str, JobStatus, list[JobRecord]]] = []
    for job_id in job_ids:
        rows = conn.execute(d.render(_LOCK_JOB), (job_id,)).fetchall()
        current = jobs_from_rows(conn, d, rows)[0] if rows else None
        if current is None:
            continue
        if current.status in (JobStatus.PENDING, JobStatus.RESERVED):
            # A reservation never started: it ends at once, as a pending job does.
            sql = _CANCEL_PENDING if current.status is JobStatus.PENDING else _CANCEL_RESERVED
            conn.execute(d.render(sql), (reason, ts, ts, job_id))
            cancelled = cascade(conn, d, job_id, current.name, JobStatus.CANCELLED.value, now)
            changes.append((job_id, current.status, cancelled))
        elif current.status is JobStatus.RUNNING and not current.cancel_requested:
            conn.execute(d.render(_REQUEST_CANCEL), (reason, ts, job_id))
            changes.append((job_id, JobStatus.RUNNING, []))
    after = load_jobs(conn, d, [job_id for job_id, _, _ in changes])
    return [
        Transition(job=after[job_id], previous=previous, cancelled=tuple(cancelled))
        for job_id, previous, cancelled in changes
    ]


__all__ = [
    "OUTCOME_STATUSES",
    "cancel_jobs",
    "cascade",
    "claim_jobs",
    "fail_unreadable",
    "finish_outcomes",
    "release_jobs",
    "renew_leases",
    "rescue_jobs",
    "start_jobs",
]
