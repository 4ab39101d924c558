"""Requeue: failed, timed-out and cancelled jobs back to pending, reviving the dependents
their end cancelled. Runs inside one transaction opened by the caller."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import psycopg

from gigq_core.records import BROKEN_STATUSES, JobStatus, Transition, cascade_reason
from gigq_postgres._rows import load_jobs

# What requeue resets; `blocked` is recounted, a pruned dependency counting as done.
_REQUEUE = """
UPDATE jobs SET status = 'pending', attempts = 0, handbacks = 0, result = NULL, error = NULL,
    worker_id = NULL, token = NULL, lease_expires_at = NULL, started_at = NULL,
    completed_at = NULL, cancel_requested = false, cancelled_by = NULL,
    run_at = %(now)s, updated_at = %(now)s,
    blocked = (SELECT count(*) FROM unnest(jobs.dependencies) AS d(id)
               JOIN jobs p ON p.id = d.id WHERE p.status <> 'completed')
WHERE id = ANY(%(ids)s) AND status IN ('failed', 'timeout', 'cancelled')
"""

_CANCELLED_BY = """
SELECT id FROM jobs WHERE cancelled_by = ANY(%s) AND status = 'cancelled' ORDER BY seq
"""

# The first dependency of each job that ended badly for good, with its name and status.
_BROKEN_DEPENDENCY = """
SELECT c.id, p.id, p.name, p.status
FROM jobs c, unnest(c.dependencies) WITH ORDINALITY AS d(id, position)
JOIN jobs p ON p.id = d.id
WHERE c.id = ANY(%s) AND p.status IN ('failed', 'timeout', 'cancelled')
ORDER BY c.id, d.position
"""

_RECANCEL = """
UPDATE jobs SET cancelled_by = %s, error = %s, updated_at = %s
WHERE id = %s AND status = 'cancelled'
"""


_REQUEUEABLE = frozenset(status.value for status in BROKEN_STATUSES)


def requeue_jobs(
    conn: psycopg.Connection, job_ids: Sequence[str], now: datetime
) -> list[Transition]:
    """Reset failed, timed-out and cancelled jobs to pending and revive what they cancelled.

    A job with a dependency that is still failed, timed out or cancelled would wait forever,
    so it stays cancelled instead, with `cancelled_by` naming that dependency: requeueing
    the dependency revives it. This holds for the jobs asked for and for their dependents.
    """
    changes: list[tuple[str, JobStatus, list[str]]] = []
    for job_id in job_ids:
        row = conn.execute("SELECT status FROM jobs WHERE id = %s FOR UPDATE", (job_id,)).fetchone()
        # (A status changed by hand to one GigQ does not know is not requeued either.)
        if row is None or row[0] not in _REQUEUEABLE:
            continue
        if not _reset_unblocked(conn, [job_id], now):
            continue
        revived: list[str] = []
        frontier = [job_id]
        while frontier:
            children = [r[0] for r in conn.execute(_CANCELLED_BY, (frontier,))]
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


def _reset_unblocked(conn: psycopg.Connection, job_ids: list[str], now: datetime) -> list[str]:
    """Reset the jobs among `job_ids` that may run again; returns them.

    A job whose dependencies cannot complete keeps (or gets) a cancelled state naming its
    broken dependency. A job whose unique key another active job holds is left as it is:
    two active jobs never share a key.
    """
    job_ids = _without_key_conflicts(conn, job_ids)
    stuck: dict[str, tuple[str, str, str]] = {}
    for job_id, upstream, name, status in conn.execute(_BROKEN_DEPENDENCY, (job_ids,)):
        stuck.setdefault(job_id, (upstream, name, status))
    if stuck:
        with conn.cursor() as cursor:
            cursor.executemany(
                _RECANCEL,
                [
                    (upstream, cascade_reason(upstream, name, status), now, job_id)
                    for job_id, (upstream, name, status) in stuck.items()
                ],
            )
    free = [job_id for job_id in job_ids if job_id not in stuck]
    if free:
        conn.execute(_REQUEUE, {"now": now, "ids": free})
    return free


def _without_key_conflicts(conn: psycopg.Connection, job_ids: list[str]) -> list[str]:
    """`job_ids` without the jobs whose unique key is held by an active job (or by an
    earlier job of the list), in seq order."""
    rows = conn.execute(
        "SELECT id, unique_key FROM jobs WHERE id = ANY(%s) ORDER BY seq", (job_ids,)
    ).fetchall()
    keys = sorted({key for _, key in rows if key is not None})
    held: set[str] = set()
    if keys:
        held = {
            key
            for (key,) in conn.execute(
                "SELECT unique_key FROM jobs WHERE unique_key = ANY(%s)"
                " AND status IN ('pending', 'running')",
                (keys,),
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
