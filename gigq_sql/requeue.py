"""Requeue: failed, timed-out and cancelled jobs back to pending, reviving the dependents
their end cancelled. Runs inside one write transaction opened by the caller."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gigq_core.records import BROKEN_STATUSES, JobStatus, Transition, cascade_reason
from gigq_sql.connection import Connection
from gigq_sql.dialect import Dialect
from gigq_sql.rows import load_jobs

# What requeue resets; `blocked` is recounted, a pruned dependency counting as done. A
# schedule still in the future is kept (a delayed job cancelled and requeued waits again).
_REQUEUE = """
UPDATE jobs SET status = 'pending', attempts = 0, handbacks = 0, result = NULL, error = NULL,
    worker_id = NULL, token = NULL, lease_expires_at = NULL, started_at = NULL,
    completed_at = NULL, cancel_requested = {false}, cancelled_by = NULL,
    run_at = {greatest}(run_at, {p}), updated_at = {p}, blocked = {blocked_count}
WHERE id {any} AND {plus}status IN ('failed', 'timeout', 'cancelled')
"""

_STATUS = "SELECT status FROM jobs WHERE id = {p}{for_update}"

_CANCELLED_BY = """
SELECT id FROM jobs WHERE cancelled_by {any} AND {plus}status = 'cancelled' ORDER BY seq
"""

_RECANCEL = """
UPDATE jobs SET cancelled_by = {p}, error = {p}, updated_at = {p}
WHERE id = {p} AND {plus}status = 'cancelled'
"""

_KEYS = "SELECT id, unique_key FROM jobs WHERE id {any} ORDER BY seq"
_HELD_KEYS = (
    "SELECT unique_key FROM jobs WHERE unique_key {any} AND {plus}status IN ('pending', 'running')"
)

_REQUEUEABLE = frozenset(status.value for status in BROKEN_STATUSES)


def requeue_jobs(
    conn: Connection, d: Dialect, job_ids: Sequence[str], now: datetime
) -> list[Transition]:
    """Reset failed, timed-out and cancelled jobs to pending and revive what they cancelled.

    A job with a dependency that is still failed, timed out or cancelled would wait forever,
    so it stays cancelled instead, with `cancelled_by` naming that dependency: requeueing
    the dependency revives it. This holds for the jobs asked for and for their dependents.
    """
    changes: list[tuple[str, JobStatus, list[str]]] = []
    for job_id in job_ids:
        row = conn.execute(d.render(_STATUS), (job_id,)).fetchone()
        # (A status written by hand that GigQ does not know is not requeued either.)
        if row is None or row[0] not in _REQUEUEABLE:
            continue
        if not _reset_unblocked(conn, d, [job_id], now):
            continue
        revived: list[str] = []
        frontier = [job_id]
        while frontier:
            children = [r[0] for r in conn.execute(d.render(_CANCELLED_BY), (d.ids(frontier),))]
            frontier = _reset_unblocked(conn, d, children, now) if children else []
            revived.extend(frontier)
        changes.append((job_id, JobStatus(row[0]), revived))
    after = load_jobs(conn, d, {i for job_id, _, revived in changes for i in (job_id, *revived)})
    return [
        Transition(
            job=after[job_id],
            previous=previous,
            revived=tuple(sorted((after[i] for i in revived), key=lambda job: job.seq)),
        )
        for job_id, previous, revived in changes
    ]


def _reset_unblocked(conn: Connection, d: Dialect, job_ids: list[str], now: datetime) -> list[str]:
    """Reset the jobs among `job_ids` that may run again; returns them.

    A job whose dependencies cannot complete keeps (or gets) a cancelled state naming its
    broken dependency. A job whose unique key another active job holds is left as it is:
    two active jobs never share a key.
    """
    ts = d.time(now)
    job_ids = _without_key_conflicts(conn, d, job_ids)
    stuck: dict[str, tuple[str, str, str]] = {}
    for job_id, upstream, name, status in conn.execute(
        d.render("{broken_dependency}"), (d.ids(job_ids),)
    ):
        stuck.setdefault(job_id, (upstream, name, status))
    if stuck:
        conn.executemany(
            d.render(_RECANCEL),
            [
                (upstream, cascade_reason(upstream, name, status), ts, job_id)
                for job_id, (upstream, name, status) in stuck.items()
            ],
        )
    free = [job_id for job_id in job_ids if job_id not in stuck]
    if free:
        conn.execute(d.render(_REQUEUE), (ts, ts, d.ids(free)))
    return free


def _without_key_conflicts(conn: Connection, d: Dialect, job_ids: list[str]) -> list[str]:
    """`job_ids` without the jobs whose unique key is held by an active job (or by an
    earlier job of the list), in seq order."""
    rows = conn.execute(d.render(_KEYS), (d.ids(job_ids),)).fetchall()
    keys = sorted({key for _, key in rows if key is not None})
    held: set[str] = set()
    if keys:
        held = {key for (key,) in conn.execute(d.render(_HELD_KEYS), (d.ids(keys),))}
    kept = []
    for job_id, key in rows:
        if key is not None:
            if key in held:
                continue
            held.add(key)
        kept.append(job_id)
    return kept


__all__ = ["requeue_jobs"]
