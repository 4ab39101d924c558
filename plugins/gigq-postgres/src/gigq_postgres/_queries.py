"""Queries behind PostgresStorage's reads and housekeeping: filters, workflows, workers,
pruning."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg

from gigq_core.records import JobFilter, WorkerInfo, WorkflowInfo
from gigq_postgres._rows import WORKER_SELECT, BadColumn, read_time, worker_from_row


def where_clause(where: JobFilter) -> tuple[str, dict[str, Any]]:
    """A WHERE clause (never empty) and its named parameters for a JobFilter."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if where.statuses is not None:
        clauses.append("status = ANY(%(statuses)s)")
        params["statuses"] = [str(s) for s in where.statuses]
    if where.queues is not None:
        clauses.append("queue = ANY(%(queues)s)")
        params["queues"] = list(where.queues)
    if where.name is not None:
        clauses.append("name = %(name)s")
        params["name"] = where.name
    if where.workflow_id is not None:
        clauses.append("workflow_id = %(workflow_id)s")
        params["workflow_id"] = where.workflow_id
    if where.updated_before is not None:
        clauses.append("updated_at < %(updated_before)s")
        params["updated_before"] = where.updated_before
    if where.updated_after is not None:
        clauses.append("updated_at >= %(updated_after)s")
        params["updated_after"] = where.updated_after
    return " AND ".join(clauses) or "true", params


def has_nul(*values: Any) -> bool:
    """True when a text value holds NUL, which PostgreSQL text cannot: no stored value
    equals it."""
    return any(isinstance(v, str) and "\x00" in v for v in values)


def filter_has_nul(where: JobFilter) -> bool:
    """True when a filter can match nothing because one of its texts holds NUL."""
    return has_nul(where.name, where.workflow_id, *(where.queues or ()))


def prefix_upper_bound(prefix: str) -> str | None:
    """The least string greater than every string starting with `prefix` (None: no bound)."""
    while prefix:
        last = ord(prefix[-1]) + 1
        if 0xD800 <= last <= 0xDFFF:
            last = 0xE000  # surrogates cannot be encoded; skip past them
        if last <= 0x10FFFF:
            return prefix[:-1] + chr(last)
        prefix = prefix[:-1]
    return None


def prune_jobs(conn: psycopg.Connection, before: datetime, statuses: list[str]) -> int:
    """Delete old jobs in `statuses` that no pending or running job depends on."""
    rows = conn.execute(
        "DELETE FROM jobs WHERE status = ANY(%s) AND updated_at < %s"
        " AND NOT EXISTS (SELECT 1 FROM jobs c WHERE c.dependencies @> ARRAY[jobs.id]"
        "   AND cardinality(c.dependencies) > 0 AND c.status IN ('pending', 'running'))"
        " RETURNING id",
        (statuses, before),
    ).fetchall()
    if rows:
        conn.execute(
            "DELETE FROM job_executions WHERE job_id = ANY(%s)", ([job_id for (job_id,) in rows],)
        )
    return len(rows)


def load_workflows(conn: psycopg.Connection, limit: int) -> list[WorkflowInfo]:
    """Workflows newest first (by their first job), with counts per status."""
    heads = conn.execute(
        "SELECT DISTINCT ON (workflow_id) workflow_id, workflow_name, created_at, seq FROM jobs"
        " WHERE workflow_id IS NOT NULL ORDER BY workflow_id, seq"
    ).fetchall()
    heads.sort(key=lambda row: -row[3])
    heads = heads[:limit]
    if not heads:
        return []
    counts: dict[str, dict[str, int]] = {}
    for workflow_id, status, total in conn.execute(
        "SELECT workflow_id, status, count(*) FROM jobs WHERE workflow_id = ANY(%s)"
        " GROUP BY workflow_id, status",
        ([row[0] for row in heads],),
    ):
        counts.setdefault(workflow_id, {})[status] = total
    return [
        WorkflowInfo(
            id=workflow_id,
            name=name or "",
            created_at=_created(created_at),
            counts=counts.get(workflow_id, {}),
        )
        for workflow_id, name, created_at, _ in heads
    ]


def _created(value: Any) -> datetime:
    """A workflow's creation time: that of its first job, or (when that row was changed by
    hand and holds no time Python can hold) the epoch, so the workflow is still listed."""
    try:
        return read_time("created_at", value)
    except BadColumn:
        return datetime.fromtimestamp(0, UTC)


def load_workers(conn: psycopg.Connection, since: datetime | None) -> list[WorkerInfo]:
    """Live workers and those stopped at or after `since`, with their running jobs."""
    rows = conn.execute(
        f"SELECT {WORKER_SELECT} FROM workers"
        " WHERE stopped_at IS NULL OR stopped_at >= %s ORDER BY started_at, id",
        (since,),
    ).fetchall()
    if not rows:
        return []
    running: dict[str, list[str]] = {}
    for worker_id, job_id in conn.execute(
        "SELECT worker_id, id FROM jobs WHERE status = 'running' AND worker_id = ANY(%s)"
        " ORDER BY seq",
        ([row[0] for row in rows],),
    ):
        running.setdefault(worker_id, []).append(job_id)
    workers = []
    for row in rows:
        try:
            workers.append(worker_from_row(row, tuple(running.get(row[0], ()))))
        except BadColumn:
            continue  # a row changed by hand: workers are bookkeeping, the others still show
    return workers


__all__ = [
    "filter_has_nul",
    "has_nul",
    "load_workers",
    "load_workflows",
    "prefix_upper_bound",
    "prune_jobs",
    "where_clause",
]
