"""State transitions of running jobs: claim, finish, heartbeat, rescue, cancel.

Each function runs inside a write transaction opened by the caller with BEGIN IMMEDIATE, so
what it reads stays true until it commits; every UPDATE still repeats its condition
(`status = 'running' AND token = ?`), so the rules live in SQL too.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from gigq_core.errors import StorageError
from gigq_core.records import (
    BROKEN_STATUSES,
    WORKER_LOST,
    Execution,
    HeartbeatReply,
    JobRecord,
    JobStatus,
    Outcome,
    Transition,
    UnreadableJob,
    cascade_reason,
    handed_back,
)
from gigq_sqlite._rows import (
    DEPENDENCIES_COLUMN,
    JOB_SELECT,
    BadColumn,
    error_columns,
    from_ts,
    from_ts_opt,
    id_list,
    jobs_from_rows,
    jobs_with_dependencies,
    load_jobs,
    read_time,
    to_ts,
    to_ts_opt,
)

log = logging.getLogger("gigq.sqlite")

OUTCOME_STATUSES = frozenset({"completed", "failed", "timeout", "cancelled", "handed_back"})

# Plans are pinned where it matters: without ANALYZE statistics SQLite would rather walk
# jobs_status (every pending job) and sort than use a partial index, so hot queries name
# their index (INDEXED BY) or hide a column from the planner with a unary "+".
# started_at is never before a dependency's completed_at: the caller reads its clock before
# it waits for the write lock, and a dependency may complete (later by the clock) while it
# waits.
_CLAIM = """
UPDATE jobs SET status = 'running', attempts = attempts + 1,
    token = lower(hex(randomblob(16))), worker_id = ?,
    started_at = max(?, coalesce((SELECT max(p.completed_at) FROM dependencies d
        JOIN jobs p ON p.id = d.depends_on WHERE d.job_id = jobs.id), 0)),
    lease_expires_at = ?, updated_at = ?, cancel_requested = 0
WHERE seq IN (
    SELECT seq FROM jobs INDEXED BY jobs_ready
    WHERE status = 'pending' AND blocked = 0 AND run_at <= ? {queues}
        AND queue NOT IN (SELECT queue FROM paused_queues)
    ORDER BY priority DESC, seq LIMIT ?
)
RETURNING {columns}
"""
# (Not DEPENDENCIES_COLUMN here: in RETURNING, SQLite scans the whole dependencies index
# for a correlated subquery instead of searching it.)
CLAIM_ANY_QUEUE = _CLAIM.format(queues="", columns=JOB_SELECT)
CLAIM_QUEUES = _CLAIM.format(
    queues="AND queue IN (SELECT value FROM json_each(?))", columns=JOB_SELECT
)

# An attempt's execution row is written once, when it ends (with the ending's commit): a
# claim then writes only the job's row, and a running attempt's execution is read from
# its job (`running_execution`). The DELETE clears a "running" row that an earlier GigQ
# version wrote at claim time for the same attempt.
_CLEAR_RUNNING_EXECUTION = """
DELETE FROM job_executions WHERE job_id = ? AND token = ? AND status = 'running'
"""

_INSERT_EXECUTION = """
INSERT INTO job_executions (id, job_id, attempt, worker_id, token, status, started_at,
    completed_at, result, error_type, error_message, error_traceback)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def execution_id(token: str) -> str:
    """An attempt's execution id: its random token, written as a UUID."""
    return str(uuid.UUID(token))


def _ended_execution(
    job: JobRecord, status: str, result: str | None, error: Any, ts: float
) -> tuple[Any, ...]:
    """Values for _INSERT_EXECUTION: the attempt `job` holds, ended now."""
    assert job.token is not None
    return (
        execution_id(job.token),
        job.id,
        job.attempts,
        job.worker_id or "",
        job.token,
        status,
        to_ts(job.started_at) if job.started_at is not None else ts,
        ts,
        result,
        *error_columns(error),
    )


def running_executions(
    conn: sqlite3.Connection, job_ids: Iterable[str], recorded: Iterable[Execution] = ()
) -> dict[str, Execution]:
    """The running attempt of each running job among `job_ids`, by job id, as an
    Execution; an attempt among `recorded` (a row an earlier version wrote) is skipped."""
    tokens = {execution.token for execution in recorded}
    rows = conn.execute(
        "SELECT id, attempts, worker_id, token, started_at FROM jobs"
        " WHERE id IN (SELECT value FROM json_each(?)) AND +status = 'running'",
        (id_list(job_ids),),
    ).fetchall()
    found: dict[str, Execution] = {}
    for job_id, attempts, worker_id, token, started_at in rows:
        if not token or token in tokens:
            continue
        try:
            found[job_id] = Execution(
                id=execution_id(token),
                job_id=job_id,
                attempt=attempts,
                worker_id=worker_id or "",
                token=token,
                status="running",
                started_at=read_time("started_at", started_at),
            )
        except (BadColumn, TypeError, ValueError):
            continue  # a row written by hand: its job shows as unreadable
    return found


def _write_executions(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    conn.executemany(_CLEAR_RUNNING_EXECUTION, [(row[1], row[4]) for row in rows])
    conn.executemany(_INSERT_EXECUTION, rows)


# A running row that cannot be read ends failed, by `seq` (the one column SQLite always
# keeps an integer): left running or pending, it would be claimed or rescued again and
# again, first in line each time, and starve the jobs behind it. The rest of the row is
# left as it was, for an operator to look at (`gigq status`), fix or delete.
_FAIL_UNREADABLE = """
UPDATE jobs SET status = 'failed', error = ?, token = NULL, lease_expires_at = NULL,
    completed_at = ?, updated_at = ?, cancel_requested = 0
WHERE seq = ? AND status = 'running' {fence}
"""
_FAIL_RUNNING = _FAIL_UNREADABLE.format(fence="")
_FAIL_HELD = _FAIL_UNREADABLE.format(fence="AND token = ?")


def fail_unreadable(
    conn: sqlite3.Connection, job: UnreadableJob, now: datetime, token: str | None = None
) -> None:
    """End the running job `job` stands in for as failed, with its dependents, and report
    it once at ERROR (`token`: only while that attempt holds it)."""
    ts = to_ts(now)
    args: tuple[Any, ...] = (job.error, ts, ts, job.seq)
    if token is None:
        changed = conn.execute(_FAIL_RUNNING, args).rowcount
    else:
        changed = conn.execute(_FAIL_HELD, (*args, token)).rowcount
    if not changed:
        return
    cascade(conn, job.id, job.name, JobStatus.FAILED.value, now)
    log.error(
        "job %r cannot be run: its row cannot be read (%s); it is marked failed, fix or"
        " delete its row",
        job.id,
        job.reason,
    )


# One statement for every way an attempt ends; the new values are computed in Python from
# the row read in the same transaction.
_END_ATTEMPT = """
UPDATE jobs SET status = ?, attempts = ?, handbacks = ?, run_at = ?, result = ?, error = ?,
    completed_at = ?, updated_at = ?, token = NULL, lease_expires_at = NULL,
    cancel_requested = 0
WHERE id = ? AND status = 'running' AND token = ?
"""

# A completed dependency no longer blocks its dependents (once per dependency row).
_RELEASE = """
UPDATE jobs SET blocked = blocked - (
    SELECT count(*) FROM dependencies d WHERE d.job_id = jobs.id AND d.depends_on = ?1)
WHERE id IN (SELECT job_id FROM dependencies WHERE depends_on = ?1)
"""

_CASCADE = f"""
UPDATE jobs SET status = 'cancelled', error = ?, cancelled_by = ?, completed_at = ?,
    updated_at = ?
WHERE id IN (SELECT job_id FROM dependencies WHERE depends_on = ?) AND +status = 'pending'
RETURNING {JOB_SELECT}
"""

_EXPIRED = f"""
SELECT {JOB_SELECT} FROM jobs INDEXED BY jobs_running
WHERE status = 'running'
    AND (lease_expires_at < ? OR worker_id IN (SELECT value FROM json_each(?)))
ORDER BY seq
"""


def claim_jobs(
    conn: sqlite3.Connection,
    worker_id: str,
    limit: int,
    now: datetime,
    lease: float,
    queues: Sequence[str] | None,
) -> list[JobRecord]:
    """Claim up to `limit` ready jobs in one UPDATE (an attempt's execution row is written
    when it ends; until then `running_executions` reads it from the job)."""
    ts = to_ts(now)
    lease_end = to_ts(now + timedelta(seconds=lease))
    head: tuple[Any, ...] = (worker_id, ts, lease_end, ts, ts)
    jobs: list[JobRecord] = []
    # A claimed row that cannot be read ends failed, and the claim goes on for the slots it
    # took (each round fails at least one row, so this ends): the valid jobs behind it run,
    # and a worker in burst mode does not take an empty claim for an empty queue.
    while len(jobs) < limit:
        wanted = limit - len(jobs)
        if queues is None:
            rows = conn.execute(CLAIM_ANY_QUEUE, (*head, wanted)).fetchall()
        else:
            rows = conn.execute(CLAIM_QUEUES, (*head, id_list(queues), wanted)).fetchall()
        unreadable = 0
        for job in jobs_from_rows(conn, rows):
            if isinstance(job, UnreadableJob):
                fail_unreadable(conn, job, now)
                unreadable += 1
            else:
                jobs.append(job)
        if not unreadable:
            break
    jobs.sort(key=lambda job: (-job.priority, job.seq))
    return jobs


_SELECT_RUNNING = f"""
SELECT {JOB_SELECT}, {DEPENDENCIES_COLUMN} FROM jobs
WHERE id IN (SELECT value FROM json_each(?))
"""


def finish_outcomes(
    conn: sqlite3.Connection, outcomes: Sequence[Outcome], now: datetime
) -> list[Transition | None]:
    """Apply attempt outcomes (fenced by token) with releases and cascades; see Storage.

    The jobs are read once; their new records are built from that read and the values
    written, not read back (the write lock keeps the two equal)."""
    for outcome in outcomes:
        if outcome.status not in OUTCOME_STATUSES:
            raise ValueError(f"unknown outcome status {outcome.status!r}")
    rows = conn.execute(_SELECT_RUNNING, (id_list({o.job_id for o in outcomes}),)).fetchall()
    before = {job.id: job for job in jobs_with_dependencies(rows)}
    ts = to_ts(now)
    applied: list[tuple[int, Outcome, JobRecord]] = []
    job_rows: list[tuple[Any, ...]] = []
    execution_rows: list[tuple[Any, ...]] = []
    completed: list[tuple[str]] = []
    broken: list[tuple[int, JobRecord, str]] = []
    for index, outcome in enumerate(outcomes):
        job = before.get(outcome.job_id)
        if isinstance(job, UnreadableJob):  # changed by hand while it ran
            fail_unreadable(conn, job, now, outcome.token)
            continue
        if job is None or job.status is not JobStatus.RUNNING or job.token != outcome.token:
            continue
        values = _ended_values(job, outcome, now)
        after = attrs.evolve(
            job,
            status=JobStatus(values[0]),
            attempts=values[1],
            handbacks=values[2],
            run_at=from_ts(values[3]),
            result=values[4],
            error=values[5],
            completed_at=from_ts_opt(values[6]),
            updated_at=from_ts(ts),
            token=None,
            lease_expires_at=None,
            cancel_requested=False,
        )
        # A second outcome for the same attempt in this batch finds the job ended.
        before[job.id] = after
        applied.append((index, outcome, after))
        job_rows.append((*values, ts, job.id, outcome.token))
        execution_rows.append(
            _ended_execution(job, outcome.status, outcome.result, outcome.error, ts)
        )
        if after.status is JobStatus.COMPLETED:
            completed.append((job.id,))
        elif after.status in BROKEN_STATUSES:
            broken.append((index, job, after.status.value))
    if not applied:
        return [None] * len(outcomes)
    changed = conn.executemany(_END_ATTEMPT, job_rows).rowcount
    if changed != len(job_rows):
        raise StorageError("a job changed under a write lock; the transaction was rolled back")
    _write_executions(conn, execution_rows)
    if completed:
        conn.executemany(_RELEASE, completed)
    cascaded = {
        index: cascade(conn, job.id, job.name, status, now) for index, job, status in broken
    }
    results: list[Transition | None] = [None] * len(outcomes)
    for index, outcome, after in applied:
        results[index] = Transition(
            job=after,
            previous=JobStatus.RUNNING,
            cancelled=tuple(cascaded.get(index, ())),
            error=outcome.error,
        )
    return results


def _ended_values(job: JobRecord, outcome: Outcome, now: datetime) -> tuple[Any, ...]:
    """The job's new (status, attempts, handbacks, run_at, result, error, completed_at)."""
    error = str(outcome.error) if outcome.error is not None else None
    run_at, attempts, handbacks = to_ts(job.run_at), job.attempts, job.handbacks
    result, completed_at = job.result, to_ts_opt(now)
    if outcome.status == "completed":
        status, result, error = JobStatus.COMPLETED, outcome.result, None
    elif outcome.status == "handed_back":
        run_at = to_ts(now)
        attempts, handbacks, spent = handed_back(attempts, handbacks, job.max_attempts)
        if spent is None:
            status, error, completed_at = JobStatus.PENDING, job.error, None
        else:
            status, error = JobStatus.FAILED, spent
    elif outcome.status in ("failed", "timeout") and outcome.retry_at is not None:
        status, run_at, completed_at = JobStatus.PENDING, to_ts(outcome.retry_at), None
        error = error or outcome.status
    else:
        status = JobStatus(outcome.status)
        if error is None:
            # A cancel request already recorded its reason on the job.
            error = job.error if status is JobStatus.CANCELLED and job.error else outcome.status
    return (status.value, attempts, handbacks, run_at, result, error, completed_at)


def cascade(
    conn: sqlite3.Connection, job_id: str, name: str, status: str, now: datetime
) -> list[JobRecord]:
    """Cancel the pending dependents of job `job_id` (which ended `status`), transitively.

    Each dependent's error names the dependency whose end cancelled it, and `cancelled_by`
    records that dependency, so requeueing it revives exactly these.
    """
    ts = to_ts(now)
    cancelled: list[JobRecord] = []
    frontier = [(job_id, name, status)]
    while frontier:
        found: list[Sequence[Any]] = []
        for upstream, upstream_name, ended in frontier:
            reason = cascade_reason(upstream, upstream_name, ended)
            rows = conn.execute(_CASCADE, (reason, upstream, ts, ts, upstream)).fetchall()
            found.extend(sorted(rows, key=lambda row: row[0]))
        frontier = [(row[1], row[2], JobStatus.CANCELLED.value) for row in found]
        # A stand-in for a row that cannot be read says nothing true about the job: its
        # row is cancelled all the same, but it is not reported.
        cancelled.extend(
            job for job in jobs_from_rows(conn, found) if not isinstance(job, UnreadableJob)
        )
    return cancelled


def renew_leases(
    conn: sqlite3.Connection,
    worker_id: str,
    held: Mapping[str, str],
    now: datetime,
    lease: float,
) -> HeartbeatReply:
    """Renew the leases of the jobs still held under their tokens; report the others."""
    conn.execute("UPDATE workers SET last_heartbeat = ? WHERE id = ?", (to_ts(now), worker_id))
    if not held:
        return HeartbeatReply()
    rows = conn.execute(
        "SELECT id, token, cancel_requested FROM jobs"
        " WHERE id IN (SELECT value FROM json_each(?)) AND +status = 'running'",
        (id_list(held),),
    ).fetchall()
    alive = {job_id: bool(cancel) for job_id, token, cancel in rows if held[job_id] == token}
    lease_end = to_ts(now + timedelta(seconds=lease))
    conn.executemany(
        "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND status = 'running' AND token = ?",
        [(lease_end, job_id, held[job_id]) for job_id in alive],
    )
    return HeartbeatReply(
        lost=frozenset(held.keys() - alive.keys()),
        cancel_requested=frozenset(job_id for job_id, cancel in alive.items() if cancel),
    )


def rescue_jobs(
    conn: sqlite3.Connection, now: datetime, worker_ids: Sequence[str]
) -> list[Transition]:
    """Return running jobs with an expired lease, or of dead workers, to pending (or fail)."""
    ts = to_ts(now)
    if worker_ids:
        conn.execute(
            "UPDATE workers SET stopped_at = ? WHERE stopped_at IS NULL"
            " AND id IN (SELECT value FROM json_each(?))",
            (ts, id_list(worker_ids)),
        )
    rows = conn.execute(_EXPIRED, (ts, id_list(worker_ids))).fetchall()
    lost = []
    for job in jobs_from_rows(conn, rows):
        if isinstance(job, UnreadableJob):
            fail_unreadable(conn, job, now)
        else:
            lost.append(job)
    if not lost:
        return []
    job_rows, execution_rows = [], []
    for job in lost:
        final = job.attempts >= job.max_attempts
        status = JobStatus.FAILED if final else JobStatus.PENDING
        run_at = job.run_at if final else now
        values = (status.value, job.attempts, job.handbacks, to_ts(run_at), job.result)
        job_rows.append(
            (*values, WORKER_LOST.message, ts if final else None, ts, job.id, job.token)
        )
        execution_rows.append(_ended_execution(job, "lost", None, WORKER_LOST, ts))
    conn.executemany(_END_ATTEMPT, job_rows)
    _write_executions(conn, execution_rows)
    cascaded = {
        job.id: cascade(conn, job.id, job.name, JobStatus.FAILED.value, now)
        for job in lost
        if job.attempts >= job.max_attempts
    }
    after = load_jobs(conn, [job.id for job in lost])
    return [
        Transition(
            job=after[job.id],
            previous=JobStatus.RUNNING,
            cancelled=tuple(cascaded.get(job.id, ())),
            error=WORKER_LOST,
        )
        for job in lost
    ]


def cancel_jobs(
    conn: sqlite3.Connection, job_ids: Sequence[str], now: datetime, reason: str
) -> list[Transition]:
    """Cancel pending jobs (with cascade) and ask running ones to stop; see Storage."""
    ts = to_ts(now)
    changes: list[tuple[str, JobStatus, list[JobRecord]]] = []
    for job_id in job_ids:
        current = load_jobs(conn, [job_id]).get(job_id)
        if current is None:
            continue
        if current.status is JobStatus.PENDING:
            conn.execute(
                "UPDATE jobs SET status = 'cancelled', error = ?, completed_at = ?,"
                " updated_at = ?, cancelled_by = NULL WHERE id = ? AND status = 'pending'",
                (reason, ts, ts, job_id),
            )
            cancelled = cascade(conn, job_id, current.name, JobStatus.CANCELLED.value, now)
            changes.append((job_id, JobStatus.PENDING, cancelled))
        elif current.status is JobStatus.RUNNING and not current.cancel_requested:
            conn.execute(
                "UPDATE jobs SET cancel_requested = 1, error = ?, updated_at = ?"
                " WHERE id = ? AND status = 'running'",
                (reason, ts, job_id),
            )
            changes.append((job_id, JobStatus.RUNNING, []))
    after = load_jobs(conn, [job_id for job_id, _, _ in changes])
    return [
        Transition(job=after[job_id], previous=previous, cancelled=tuple(cancelled))
        for job_id, previous, cancelled in changes
    ]


__all__ = [
    "cancel_jobs",
    "cascade",
    "claim_jobs",
    "fail_unreadable",
    "finish_outcomes",
    "renew_leases",
    "rescue_jobs",
    "running_executions",
]
