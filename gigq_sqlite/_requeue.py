"""Requeue: failed, timed-out and cancelled jobs back to pending, reviving the dependents
their end cancelled.

Runs inside a write transaction opened by the caller with BEGIN IMMEDIATE.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from gigq_core.records import BROKEN_STATUSES, JobStatus, Transition, cascade_reason
from gigq_sqlite._rows import id_list, load_jobs, to_ts

# What requeue resets; `blocked` is recounted, a pruned dependency counting as done.
_RESET = """
status = 'pending', attempts = 0, handbacks = 0, result = NULL, error = NULL,
worker_id = NULL, token = NULL, lease_expires_at = NULL, started_at = NULL,
completed_at = NULL, cancel_requested = 0, cancelled_by = NULL, run_at = ?1, updated_at = ?1,
blocked = (SELECT count(*) FROM dependencies d JOIN jobs p ON p.id = d.depends_on
           WHERE d.job_id = jobs.id AND p.status <> 'completed')
"""
_REQUEUE = f"""
UPDATE jobs SET {_RESET}
WHERE id IN (SELECT value FROM json_each(?2)) AND +status IN ('failed', 'timeout', 'cancelled')
"""

_CANCELLED_BY = """
SELECT id FROM jobs
WHERE cancelled_by IN (SELECT value FROM json_each(?)) AND +status = 'cancelled'
ORDER BY seq
"""

# The first dependency of each job that ended badly for good, with its name and status.
_BROKEN_DEPENDENCY = """
SELECT d.job_id, p.id, p.name, p.status
FROM dependencies d JOIN jobs p ON p.id = d.depends_on
WHERE d.job_id IN (SELECT value FROM json_each(?))
    AND p.status IN ('failed', 'timeout', 'cancelled')
ORDER BY d.job_id, d.position
"""

_REQUEUEABLE = frozenset(status.value for status in BROKEN_STATUSES)

_RECANCEL = """
UPDATE jobs SET cancelled_by = ?, error = ?, updated_at = ?
WHERE id = ? AND +status = 'cancelled'
"""


def requeue_jobs(
    conn: sqlite3.Connection, job_ids: Sequence[str], now: datetime
) -> list[Transition]:
    """Reset failed, timed-out and cancelled jobs to pending and revive what they cancelled.

    A job with a dependency that is still failed, timed out or cancelled would wait forever,
    so it stays cancelled instead, with `cancelled_by` naming that dependency: requeueing
    the dependency revives it. This holds for the jobs asked for and for their dependents.
    """
    changes: list[tuple[str, JobStatus, list[str]]] = []
    for job_id in job_ids:
        row = conn.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
        # (A status written by hand that GigQ does not know is not requeued either.)
        if row is None or row[0] not in _REQUEUEABLE:
            continue
        if not _reset_unblocked(conn, [job_id], now):
            continue
        revived: list[str] = []
        frontier = [job_id]
        while frontier:
            children = [r[0] for r in conn.execute(_CANCELLED_BY, (id_list(frontier),))]
            frontier = _reset_unblocked(conn, children, now) if children else []
            revived.extend(frontier)
        changes.append((job_id, JobStatus(row[0]), revived))
    after = load_jobs(conn, {i for job_id, _, revived in changes for i in (job_id, *revived)})
    return [
        Transition(
            job=after[job_id],
            previous=previous,
            revived=tuple(sorted((after[i] for i in revived), key=lambda job: job.seq)),
        )
        for job_id, previous, revived in changes
    ]


def _reset_unblocked(conn: sqlite3.Connection, job_ids: list[str], now: datetime) -> list[str]:
    """Reset the jobs among `job_ids` that may run again; returns them.

    A job whose dependencies cannot complete keeps (or gets) a cancelled state naming its
    broken dependency. A job whose unique key another active job holds is left as it is:
    two active jobs never share a key.
    """
    ts = to_ts(now)
    job_ids = _without_key_conflicts(conn, job_ids)
    stuck: dict[str, tuple[str, str, str]] = {}
    for job_id, upstream, name, status in conn.execute(_BROKEN_DEPENDENCY, (id_list(job_ids),)):
        stuck.setdefault(job_id, (upstream, name, status))
    conn.executemany(
        _RECANCEL,
        [
            (upstream, cascade_reason(upstream, name, status), ts, job_id)
            for job_id, (upstream, name, status) in stuck.items()
        ],
    )
    free = [job_id for job_id in job_ids if job_id not in stuck]
    if free:
        conn.execute(_REQUEUE, (ts, id_list(free)))
    return free


def _without_key_conflicts(conn: sqlite3.Connection, job_ids: list[str]) -> list[str]:
    """`job_ids` without the jobs whose unique key is held by an active job (or by an
    earlier job of the list), in seq order."""
    rows = conn.execute(
        "SELECT id, unique_key FROM jobs WHERE id IN (SELECT value FROM json_each(?)) ORDER BY seq",
        (id_list(job_ids),),
    ).fetchall()
    keys = {key for _, key in rows if key is not None}
    held: set[str] = set()
    if keys:
        held = {
            key
            for (key,) in conn.execute(
                "SELECT unique_key FROM jobs WHERE unique_key IN (SELECT value FROM json_each(?))"
                " AND +status IN ('pending', 'running')",
                (id_list(keys),),
            )
        }
    kept = []
    for job_id, key in rows:
        if key is not None:
            if key in held:
                continue
            held.add(key)
        kept.append(job_id)
    return kept


__all__ = ["requeue_jobs"]
