"""State transitions of running jobs: claim, finish, heartbeat, rescue, cancel.

Each function runs inside one transaction (READ COMMITTED) opened by the caller. Rows are
locked before they are read for a decision (FOR UPDATE), and every UPDATE still repeats
its condition (`status = 'running' AND token = ...`), so the rules live in SQL too.
Times are the caller's `now` (see the README: the contract drives time with a clock it
passes in; the server's clock is never consulted).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg

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
from gigq_postgres._rows import (
    JOB_SELECT,
    error_columns,
    job_or_stand_in,
    job_select,
    load_jobs,
)

log = logging.getLogger("gigq.postgres")

OUTCOME_STATUSES = frozenset({"completed", "failed", "timeout", "cancelled", "handed_back"})

# One statement: pick the ready jobs (skipping rows other claimers hold), mark them running
# with a fresh token, and open an execution record for each. started_at is never before a
# dependency's completed_at: the caller reads its clock before the statement runs, and a
# dependency may complete (later by the clock) in between.
_CLAIM = f"""
WITH ready AS (
    SELECT seq FROM jobs
    WHERE status = 'pending' AND blocked = 0 AND run_at <= %(now)s {{queues}}
        AND queue NOT IN (SELECT queue FROM paused_queues)
    ORDER BY priority DESC, seq
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE jobs j SET status = 'running', attempts = j.attempts + 1,
        token = replace(gen_random_uuid()::text, '-', ''), worker_id = %(worker)s,
        started_at = GREATEST(%(now)s, (SELECT max(p.completed_at) FROM jobs p
            WHERE p.id = ANY(j.dependencies))),
        lease_expires_at = %(lease_end)s, updated_at = %(now)s,
        cancel_requested = false
    FROM ready WHERE j.seq = ready.seq
    RETURNING {job_select("j")}
), opened AS (
    INSERT INTO job_executions (id, job_id, attempt, worker_id, token, status, started_at)
    SELECT gen_random_uuid()::text, id, attempts, %(worker)s, token, 'running', started_at
    FROM claimed ORDER BY priority DESC, seq
)
SELECT * FROM claimed ORDER BY priority DESC, seq
"""
CLAIM_ANY_QUEUE = _CLAIM.format(queues="")
CLAIM_QUEUES = _CLAIM.format(queues="AND queue = ANY(%(queues)s)")

_END_EXECUTION = """
UPDATE job_executions SET status = %s, result = %s, error_type = %s, error_message = %s,
    error_traceback = %s, completed_at = %s
WHERE job_id = %s AND token = %s
"""

# One statement for every way an attempt ends; the new values are computed in Python from
# the row read (and locked) in the same transaction.
_END_ATTEMPT = """
UPDATE jobs SET status = %s, attempts = %s, handbacks = %s, run_at = %s, result = %s,
    error = %s, completed_at = %s, updated_at = %s, token = NULL, lease_expires_at = NULL,
    cancel_requested = false
WHERE id = %s AND status = 'running' AND token = %s
"""

# A completed dependency no longer blocks its dependents (once per mention).
_RELEASE = """
UPDATE jobs SET blocked = blocked - cardinality(array_positions(dependencies, %(id)s::text))
WHERE dependencies @> ARRAY[%(id)s::text] AND cardinality(dependencies) > 0
"""

_CASCADE = f"""
UPDATE jobs SET status = 'cancelled', error = %(reason)s, cancelled_by = %(upstream)s,
    completed_at = %(now)s, updated_at = %(now)s
WHERE dependencies @> ARRAY[%(upstream)s::text] AND cardinality(dependencies) > 0
    AND status = 'pending'
RETURNING {JOB_SELECT}
"""

# Other rescuers skip rows this one holds, and rows a finishing worker holds are left to it.
_EXPIRED = f"""
SELECT {JOB_SELECT} FROM jobs
WHERE status = 'running' AND (lease_expires_at < %s OR worker_id = ANY(%s))
ORDER BY seq
FOR UPDATE SKIP LOCKED
"""


def claim_jobs(
    conn: psycopg.Connection,
    worker_id: str,
    limit: int,
    now: datetime,
    lease: float,
    queues: Sequence[str] | None,
) -> list[JobRecord]:
    """Claim up to `limit` ready jobs in one statement, opening an execution for each.

    A claimed row that cannot be read ends failed (`fail_unreadable`) and the claim goes on
    for the slots it took (each round fails at least one row, so this ends): the valid jobs
    behind it run, and a worker in burst mode does not take an empty claim for an empty
    queue."""
    params: dict[str, Any] = {
        "now": now,
        "worker": worker_id,
        "lease_end": now + timedelta(seconds=lease),
    }
    if queues is not None:
        params["queues"] = list(queues)
    jobs: list[JobRecord] = []
    while len(jobs) < limit:
        params["limit"] = limit - len(jobs)
        rows = conn.execute(CLAIM_ANY_QUEUE if queues is None else CLAIM_QUEUES, params)
        unreadable = 0
        for job in [job_or_stand_in(row) for row in rows.fetchall()]:
            if isinstance(job, UnreadableJob):
                fail_unreadable(conn, job, now)
                unreadable += 1
            else:
                jobs.append(job)
        if not unreadable:
            break
    jobs.sort(key=lambda job: (-job.priority, job.seq))
    return jobs


# A running row that cannot be read ends failed, by `seq`: left running or pending, it would
# be claimed or rescued again and again, first in line each time, and starve the jobs behind
# it. The rest of the row is left as it was, for an operator to look at, fix or delete.
_FAIL_UNREADABLE = """
WITH old AS (
    SELECT seq, token FROM jobs WHERE seq = %(seq)s AND status = 'running' {fence}
    FOR UPDATE
)
UPDATE jobs j SET status = 'failed', error = %(error)s, token = NULL,
    lease_expires_at = NULL, completed_at = %(now)s, updated_at = %(now)s,
    cancel_requested = false
FROM old WHERE j.seq = old.seq
RETURNING j.id, old.token
"""
_FAIL_RUNNING = _FAIL_UNREADABLE.format(fence="")
_FAIL_HELD = _FAIL_UNREADABLE.format(fence="AND token = %(token)s")
# The attempt's execution record, opened by the claim, ends with the job.
_FAIL_EXECUTION = """
UPDATE job_executions SET status = 'failed', error_type = 'UnreadableRow',
    error_message = %s, completed_at = %s
WHERE job_id = %s AND token = %s AND completed_at IS NULL
"""


def fail_unreadable(
    conn: psycopg.Connection, job: UnreadableJob, now: datetime, token: str | None = None
) -> None:
    """End the running job `job` stands in for as failed, with its dependents, and report
    it once at ERROR (`token`: only while that attempt holds it)."""
    params = {"seq": job.seq, "error": job.error, "now": now, "token": token}
    query = _FAIL_RUNNING if token is None else _FAIL_HELD
    failed = conn.execute(query, params).fetchone()
    if failed is None:
        return
    conn.execute(_FAIL_EXECUTION, (job.error, now, *failed))
    cascade(conn, job.id, job.name, JobStatus.FAILED.value, now)
    log.error(
        "job %r cannot be run: its row cannot be read (%s); it is marked failed, fix or"
        " delete its row",
        job.id,
        job.reason,
    )


_ATTEMPT_COLUMNS = (
    "id, name, status, token, attempts, handbacks, run_at, result, error, max_attempts, seq"
)


def finish_outcomes(
    conn: psycopg.Connection, outcomes: Sequence[Outcome], now: datetime, attempt: int
) -> list[Transition | None]:
    """Apply attempt outcomes (fenced by token) with releases and cascades; see Storage.

    On a retry (`attempt` > 0) an outcome whose attempt already ended the same way (its
    execution record says so) was applied by the try whose commit was not acknowledged: it
    gets a Transition again (without its cascade), never a second application.
    """
    for outcome in outcomes:
        if outcome.status not in OUTCOME_STATUSES:
            raise ValueError(f"unknown outcome status {outcome.status!r}")
    ids = sorted({o.job_id for o in outcomes})
    before = {
        row[0]: row
        for row in conn.execute(
            f"SELECT {_ATTEMPT_COLUMNS} FROM jobs WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
            (ids,),
        )
    }
    applied: list[tuple[int, Outcome]] = []
    ended: set[str] = set()
    job_rows: list[tuple[Any, ...]] = []
    execution_rows: list[tuple[Any, ...]] = []
    completed: list[dict[str, str]] = []
    broken: list[tuple[int, str, str, str]] = []
    for index, outcome in enumerate(outcomes):
        job = before.get(outcome.job_id)
        if job is None or job[0] in ended or job[2] != "running" or job[3] != outcome.token:
            continue
        if not isinstance(job[6], datetime):  # run_at changed by hand while it ran
            reason = f"run_at is {job[6]!r}, not a time"
            stand_in = UnreadableJob.stand_in(
                seq=job[10], job_id=job[0], name=job[1], reason=reason
            )
            fail_unreadable(conn, stand_in, now, outcome.token)
            ended.add(job[0])
            continue
        ended.add(job[0])
        applied.append((index, outcome))
        status, values = _ended_values(job, outcome, now)
        job_rows.append((*values, now, job[0], outcome.token))
        execution_rows.append(
            (
                outcome.status,
                outcome.result,
                *error_columns(outcome.error),
                now,
                job[0],
                outcome.token,
            )
        )
        if status is JobStatus.COMPLETED:
            completed.append({"id": job[0]})
        elif status in BROKEN_STATUSES:
            broken.append((index, job[0], job[1], status.value))
    results: list[Transition | None] = [None] * len(outcomes)
    if attempt > 0:
        _replayed(conn, outcomes, results, ended)
    if not applied:
        return results
    with conn.cursor() as cursor:
        cursor.executemany(_END_ATTEMPT, job_rows)
        cursor.executemany(_END_EXECUTION, execution_rows)
        if completed:
            cursor.executemany(_RELEASE, completed)
    cascaded = {
        index: cascade(conn, job_id, name, status, now) for index, job_id, name, status in broken
    }
    after = load_jobs(conn, [o.job_id for _, o in applied])
    if len(after) != len(applied):
        raise StorageError("a job vanished while its attempt ended; the transaction was undone")
    for index, outcome in applied:
        results[index] = Transition(
            job=after[outcome.job_id],
            previous=JobStatus.RUNNING,
            cancelled=tuple(cascaded.get(index, ())),
            error=outcome.error,
        )
    return results


def _replayed(
    conn: psycopg.Connection,
    outcomes: Sequence[Outcome],
    results: list[Transition | None],
    ended: set[str],
) -> None:
    """Fill in Transitions for outcomes an unacknowledged earlier try already applied."""
    waiting = [(i, o) for i, o in enumerate(outcomes) if o.job_id not in ended]
    if not waiting:
        return
    rows = conn.execute(
        "SELECT job_id, token, status FROM job_executions"
        " WHERE job_id = ANY(%s) AND token = ANY(%s) AND completed_at IS NOT NULL",
        ([o.job_id for _, o in waiting], [o.token for _, o in waiting]),
    ).fetchall()
    done = {(job_id, token): status for job_id, token, status in rows}
    jobs = load_jobs(conn, [o.job_id for _, o in waiting])
    seen: set[str] = set()
    for index, outcome in waiting:
        if outcome.job_id in seen or outcome.job_id not in jobs:
            continue
        if done.get((outcome.job_id, outcome.token)) == outcome.status:
            seen.add(outcome.job_id)
            results[index] = Transition(
                job=jobs[outcome.job_id], previous=JobStatus.RUNNING, error=outcome.error
            )


def _ended_values(
    job: Sequence[Any], outcome: Outcome, now: datetime
) -> tuple[JobStatus, tuple[Any, ...]]:
    """The job's new (status, attempts, handbacks, run_at, result, error, completed_at)."""
    _, _, _, _, attempts, handbacks, run_at, result, job_error, max_attempts = job[:10]
    error = str(outcome.error) if outcome.error is not None else None
    completed_at: datetime | None = now
    if outcome.status == "completed":
        status, result, error = JobStatus.COMPLETED, outcome.result, None
    elif outcome.status == "handed_back":
        run_at = now
        attempts, handbacks, spent = handed_back(attempts, handbacks, max_attempts)
        if spent is None:
            status, error, completed_at = JobStatus.PENDING, job_error, None
        else:
            status, error = JobStatus.FAILED, spent
    elif outcome.status in ("failed", "timeout") and outcome.retry_at is not None:
        status, run_at, completed_at = JobStatus.PENDING, outcome.retry_at, None
        error = error or outcome.status
    else:
        status = JobStatus(outcome.status)
        if error is None:
            # A cancel request already recorded its reason on the job.
            error = job_error if status is JobStatus.CANCELLED and job_error else outcome.status
    return status, (status.value, attempts, handbacks, run_at, result, error, completed_at)


def cascade(
    conn: psycopg.Connection, job_id: str, name: str, status: str, now: datetime
) -> list[JobRecord]:
    """Cancel the pending dependents of job `job_id` (which ended `status`), transitively.

    Each dependent's error names the dependency whose end cancelled it, and `cancelled_by`
    records that dependency, so requeueing it revives exactly these.
    """
    cancelled: list[JobRecord] = []
    frontier = [(job_id, name, status)]
    while frontier:
        found: list[JobRecord] = []
        for upstream, upstream_name, ended in frontier:
            rows = conn.execute(
                _CASCADE,
                {
                    "reason": cascade_reason(upstream, upstream_name, ended),
                    "upstream": upstream,
                    "now": now,
                },
            ).fetchall()
            found.extend(sorted((job_or_stand_in(row) for row in rows), key=lambda j: j.seq))
        frontier = [(job.id, job.name, JobStatus.CANCELLED.value) for job in found]
        # A stand-in for a row that cannot be read says nothing true about the job: its
        # row is cancelled all the same, but it is not reported.
        cancelled.extend(job for job in found if not isinstance(job, UnreadableJob))
    return cancelled


def renew_leases(
    conn: psycopg.Connection,
    worker_id: str,
    held: Mapping[str, str],
    now: datetime,
    lease: float,
) -> HeartbeatReply:
    """Renew the leases of the jobs still held under their tokens; report the others."""
    conn.execute("UPDATE workers SET last_heartbeat = %s WHERE id = %s", (now, worker_id))
    if not held:
        return HeartbeatReply()
    job_ids = sorted(held)
    rows = conn.execute(
        "UPDATE jobs j SET lease_expires_at = %s"
        " FROM unnest(%s::text[], %s::text[]) AS h(id, token)"
        " WHERE j.id = h.id AND j.token = h.token AND j.status = 'running'"
        " RETURNING j.id, j.cancel_requested",
        (now + timedelta(seconds=lease), job_ids, [held[i] for i in job_ids]),
    ).fetchall()
    alive = {job_id: bool(cancel) for job_id, cancel in rows}
    return HeartbeatReply(
        lost=frozenset(held.keys() - alive.keys()),
        cancel_requested=frozenset(job_id for job_id, cancel in alive.items() if cancel),
    )


def rescue_jobs(
    conn: psycopg.Connection, now: datetime, worker_ids: Sequence[str]
) -> list[Transition]:
    """Return running jobs with an expired lease, or of dead workers, to pending (or fail)."""
    dead = list(worker_ids)
    if dead:
        conn.execute(
            "UPDATE workers SET stopped_at = %s WHERE stopped_at IS NULL AND id = ANY(%s)",
            (now, dead),
        )
    lost = []
    for row in conn.execute(_EXPIRED, (now, dead)).fetchall():
        job = job_or_stand_in(row)
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
        values = (status.value, job.attempts, job.handbacks, run_at, job.result)
        job_rows.append(
            (*values, WORKER_LOST.message, now if final else None, now, job.id, job.token)
        )
        execution_rows.append(("lost", None, *error_columns(WORKER_LOST), now, job.id, job.token))
    with conn.cursor() as cursor:
        cursor.executemany(_END_ATTEMPT, job_rows)
        cursor.executemany(_END_EXECUTION, execution_rows)
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
    conn: psycopg.Connection, job_ids: Sequence[str], now: datetime, reason: str
) -> list[Transition]:
    """Cancel pending jobs (with cascade) and ask running ones to stop; see Storage."""
    changes: list[tuple[str, JobStatus, list[JobRecord]]] = []
    for job_id in job_ids:
        row = conn.execute(
            "SELECT name, status, cancel_requested FROM jobs WHERE id = %s FOR UPDATE", (job_id,)
        ).fetchone()
        if row is None:
            continue
        name, status, requested = row
        if status == JobStatus.PENDING.value:
            conn.execute(
                "UPDATE jobs SET status = 'cancelled', error = %s, completed_at = %s,"
                " updated_at = %s, cancelled_by = NULL WHERE id = %s AND status = 'pending'",
                (reason, now, now, job_id),
            )
            cancelled = cascade(conn, job_id, name, JobStatus.CANCELLED.value, now)
            changes.append((job_id, JobStatus.PENDING, cancelled))
        elif status == JobStatus.RUNNING.value and not requested:
            conn.execute(
                "UPDATE jobs SET cancel_requested = true, error = %s, updated_at = %s"
                " WHERE id = %s AND status = 'running'",
                (reason, now, job_id),
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
]
