"""Reads and housekeeping behind the storage front end that take more than one statement:
filters, workflows, workers, executions, pruning."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gigq_core.records import Execution, JobFilter, WorkerInfo, WorkflowInfo
from gigq_sql.connection import Connection
from gigq_sql.dialect import BadColumn, Dialect
from gigq_sql.rows import EXECUTION_COLUMNS, WORKER_COLUMNS, execution_from_row, worker_from_row

#: The status a row shows: a running row without `started_at` is a reservation.
SHOWN_STATUS = "CASE WHEN status = 'running' AND started_at IS NULL THEN 'reserved' ELSE status END"

#: What stands for "running" and for "reserved" in a filter on the stored status.
_STARTED = "(status = 'running' AND started_at IS NOT NULL)"
_RESERVED = "(status = 'running' AND started_at IS NULL)"


def _status_clause(d: Dialect, statuses: list[str]) -> tuple[str, list[Any]]:
    """A condition `the shown status is one of statuses` and its parameters."""
    stored = [s for s in statuses if s not in ("running", "reserved")]
    if "running" in statuses and "reserved" in statuses:
        stored.append("running")
    parts: list[str] = []
    params: list[Any] = []
    if stored:
        clause, params = d.in_values("status", stored)
        parts.append(clause)
    if "running" in statuses and "reserved" not in statuses:
        parts.append(_STARTED)
    elif "reserved" in statuses and "running" not in statuses:
        parts.append(_RESERVED)
    if not parts:
        return d.render("{false}"), []
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")", params


def where_clause(d: Dialect, where: JobFilter) -> tuple[str, list[Any]]:
    """A WHERE clause (never empty) and its parameters for a JobFilter."""
    clauses: list[str] = []
    params: list[Any] = []
    if where.statuses is not None:
        clause, args = _status_clause(d, [str(s) for s in where.statuses])
        clauses.append(clause)
        params.extend(args)
    if where.queues is not None:
        clause, args = d.in_values("queue", list(where.queues))
        clauses.append(clause)
        params.extend(args)
    for clause, value in (
        ("name = {p}", where.name),
        ("workflow_id = {p}", where.workflow_id),
        ("unique_key = {p}", where.unique_key),
        ("updated_at < {p}", d.time_opt(where.updated_before)),
        ("updated_at >= {p}", d.time_opt(where.updated_after)),
    ):
        if value is not None:
            clauses.append(d.render(clause))
            params.append(value)
    return " AND ".join(clauses) or d.render("{true}"), params


def filter_unmatchable(d: Dialect, where: JobFilter) -> bool:
    """True when a filter can match nothing: one of its texts cannot be stored."""
    return d.unmatchable(where.name, where.workflow_id, where.unique_key, *(where.queues or ()))


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


_PRUNE = """
DELETE FROM jobs WHERE status {any} AND updated_at < {p} AND NOT {has_active_dependent}
RETURNING id
"""


def prune_jobs(conn: Connection, d: Dialect, before: datetime, statuses: list[str]) -> int:
    """Delete old jobs in `statuses` that no pending or running job depends on."""
    rows = conn.execute(d.render(_PRUNE), (d.ids(statuses), d.time(before))).fetchall()
    if rows:
        ids = [job_id for (job_id,) in rows]
        conn.execute(d.render("DELETE FROM job_executions WHERE job_id {any}"), (d.ids(ids),))
        d.forget_dependencies(conn, ids)
    return len(rows)


def load_executions(conn: Connection, d: Dialect, job_id: str) -> list[Execution]:
    """The job's execution records, oldest first (a running attempt last)."""
    rows = conn.execute(
        d.render(
            f"SELECT {EXECUTION_COLUMNS} FROM job_executions WHERE job_id = {{p}}"
            " ORDER BY {execution_order}"
        ),
        (job_id,),
    ).fetchall()
    found = [execution_from_row(d, row) for row in rows]
    running = d.running_executions(conn, [job_id], found)
    return found + list(running.values())


_WORKFLOW_FIRSTS = """
SELECT workflow_id, min(seq) AS first FROM jobs WHERE workflow_id IS NOT NULL
GROUP BY workflow_id ORDER BY first DESC LIMIT {p}
"""
_WORKFLOW_HEADS = "SELECT workflow_id, workflow_name, created_at FROM jobs WHERE seq {any}"
_WORKFLOW_COUNTS = f"""
SELECT workflow_id, {SHOWN_STATUS}, count(*) FROM jobs WHERE workflow_id {{any}}
GROUP BY 1, 2
"""


def load_workflows(conn: Connection, d: Dialect, limit: int) -> list[WorkflowInfo]:
    """Workflows newest first (by their first job), with counts per status."""
    firsts = conn.execute(d.render(_WORKFLOW_FIRSTS), (limit,)).fetchall()
    if not firsts:
        return []
    heads = {
        workflow_id: (name, created_at)
        for workflow_id, name, created_at in conn.execute(
            d.render(_WORKFLOW_HEADS), (d.ids(seq for _, seq in firsts),)
        )
    }
    counts: dict[str, dict[str, int]] = {}
    for workflow_id, status, total in conn.execute(
        d.render(_WORKFLOW_COUNTS), (d.ids(workflow_id for workflow_id, _ in firsts),)
    ):
        per = counts.setdefault(workflow_id, {})
        per[status] = per.get(status, 0) + total
    return [
        WorkflowInfo(
            id=workflow_id,
            name=heads[workflow_id][0] if isinstance(heads[workflow_id][0], str) else "",
            created_at=_created(d, heads[workflow_id][1]),
            counts=counts.get(workflow_id, {}),
        )
        for workflow_id, _ in firsts
    ]


def _created(d: Dialect, value: Any) -> datetime:
    """A workflow's creation time: that of its first job, or (when that row was changed by
    hand and holds no time) the epoch, so the workflow is still listed."""
    try:
        return d.read_time("created_at", value)
    except BadColumn:
        return datetime.fromtimestamp(0, UTC)


_WORKERS = f"""
SELECT {WORKER_COLUMNS} FROM workers
WHERE stopped_at IS NULL OR stopped_at >= {{p}} ORDER BY started_at, id
"""
_RUNNING_BY_WORKER = """
SELECT worker_id, id FROM jobs WHERE status = 'running' AND worker_id {any} ORDER BY seq
"""


def load_workers(conn: Connection, d: Dialect, since: datetime | None) -> list[WorkerInfo]:
    """Live workers and those stopped at or after `since`, with their running jobs."""
    rows = conn.execute(d.render(_WORKERS), (d.time_opt(since),)).fetchall()
    if not rows:
        return []
    running: dict[str, list[str]] = {}
    for worker_id, job_id in conn.execute(
        d.render(_RUNNING_BY_WORKER), (d.ids(row[0] for row in rows),)
    ):
        running.setdefault(worker_id, []).append(job_id)
    workers = []
    for row in rows:
        try:
            workers.append(worker_from_row(d, row, tuple(running.get(row[0], ()))))
        except BadColumn:
            continue  # a row changed by hand: workers are bookkeeping, the others still show
    return workers


__all__ = [
    "filter_unmatchable",
    "load_executions",
    "load_workers",
    "load_workflows",
    "prefix_upper_bound",
    "prune_jobs",
    "where_clause",
]
