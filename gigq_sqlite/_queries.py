"""Queries behind SqliteStorage's reads and housekeeping: filters, workflows, workers,
pruning."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from gigq_core.records import JobFilter, WorkerInfo, WorkflowInfo
from gigq_sqlite._rows import (
    WORKER_SELECT,
    BadColumn,
    from_ts,
    id_list,
    read_time,
    to_ts,
    worker_from_row,
)

#: Free pages returned to the file system per prune (8 MiB at the default page size).
VACUUM_PAGES = 2048


def where_clause(where: JobFilter) -> tuple[str, tuple[Any, ...]]:
    """A WHERE clause (never empty) and its parameters for a JobFilter."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, values in (
        ("status", None if where.statuses is None else [str(s) for s in where.statuses]),
        ("queue", None if where.queues is None else list(where.queues)),
    ):
        if values is None:
            continue
        if len(values) == 1:
            clauses.append(f"{column} = ?")
        else:
            # A literal list (not json_each) lets SQLite walk the (column, seq) index per value.
            clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
        params.extend(values)
    if where.name is not None:
        clauses.append("name = ?")
        params.append(where.name)
    if where.workflow_id is not None:
        clauses.append("workflow_id = ?")
        params.append(where.workflow_id)
    if where.updated_before is not None:
        clauses.append("updated_at < ?")
        params.append(to_ts(where.updated_before))
    if where.updated_after is not None:
        clauses.append("updated_at >= ?")
        params.append(to_ts(where.updated_after))
    return " AND ".join(clauses) or "1", tuple(params)


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


def prune_jobs(conn: sqlite3.Connection, before: float, statuses: list[str]) -> int:
    """Delete old jobs in `statuses` that no pending or running job depends on."""
    rows = conn.execute(
        "DELETE FROM jobs WHERE status IN (SELECT value FROM json_each(?)) AND updated_at < ?"
        " AND NOT EXISTS (SELECT 1 FROM dependencies d JOIN jobs c ON c.id = d.job_id"
        "   WHERE d.depends_on = jobs.id AND c.status IN ('pending', 'running'))"
        " RETURNING id",
        (id_list(statuses), before),
    ).fetchall()
    conn.executemany("DELETE FROM job_executions WHERE job_id = ?", rows)
    conn.executemany("DELETE FROM dependencies WHERE job_id = ?", rows)
    return len(rows)


def vacuum_some(conn: sqlite3.Connection) -> None:
    """Return some free pages to the file system (auto_vacuum is INCREMENTAL)."""
    conn.execute(f"PRAGMA incremental_vacuum({VACUUM_PAGES})").fetchall()


def load_workflows(conn: sqlite3.Connection, limit: int) -> list[WorkflowInfo]:
    """Workflows newest first (by their first job), with counts per status."""
    firsts = conn.execute(
        "SELECT workflow_id, min(seq) AS first FROM jobs WHERE workflow_id IS NOT NULL"
        " GROUP BY workflow_id ORDER BY first DESC LIMIT ?",
        (limit,),
    ).fetchall()
    if not firsts:
        return []
    heads = {
        workflow_id: (name, created_at)
        for workflow_id, name, created_at in conn.execute(
            "SELECT workflow_id, workflow_name, created_at FROM jobs"
            " WHERE seq IN (SELECT value FROM json_each(?))",
            (json.dumps([seq for _, seq in firsts]),),
        )
    }
    counts: dict[str, dict[str, int]] = {}
    for workflow_id, status, total in conn.execute(
        "SELECT workflow_id, status, count(*) FROM jobs"
        " WHERE workflow_id IN (SELECT value FROM json_each(?)) GROUP BY workflow_id, status",
        (id_list(workflow_id for workflow_id, _ in firsts),),
    ):
        counts.setdefault(workflow_id, {})[status] = total
    return [
        WorkflowInfo(
            id=workflow_id,
            name=heads[workflow_id][0] if isinstance(heads[workflow_id][0], str) else "",
            created_at=_created(heads[workflow_id][1]),
            counts=counts.get(workflow_id, {}),
        )
        for workflow_id, _ in firsts
    ]


def _created(value: Any) -> datetime:
    """A workflow's creation time: that of its first job, or (when that row was written by
    hand and holds no time) the epoch, so the workflow is still listed."""
    try:
        return read_time("created_at", value)
    except BadColumn:
        return from_ts(0)


def load_workers(conn: sqlite3.Connection, since: datetime | None) -> list[WorkerInfo]:
    """Live workers and those stopped at or after `since`, with their running jobs."""
    rows = conn.execute(
        f"SELECT {WORKER_SELECT} FROM workers"
        " WHERE stopped_at IS NULL OR stopped_at >= ? ORDER BY started_at, id",
        (None if since is None else to_ts(since),),
    ).fetchall()
    if not rows:
        return []
    running: dict[str, list[str]] = {}
    for worker_id, job_id in conn.execute(
        "SELECT worker_id, id FROM jobs WHERE status = 'running'"
        " AND worker_id IN (SELECT value FROM json_each(?)) ORDER BY seq",
        (id_list(row[0] for row in rows),),
    ):
        running.setdefault(worker_id, []).append(job_id)
    workers = []
    for row in rows:
        try:
            workers.append(worker_from_row(row, tuple(running.get(row[0], ()))))
        except BadColumn:
            continue  # a row written by hand: workers are bookkeeping, the others still show
    return workers


__all__ = [
    "load_workers",
    "load_workflows",
    "prefix_upper_bound",
    "prune_jobs",
    "vacuum_some",
    "where_clause",
]
