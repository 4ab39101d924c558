"""Export and import of a whole queue (the optional `export()` / `import_()` capabilities;
the item format and the rebuilt bookkeeping are gigq_core.transfer's). The adapter opens
the snapshot and the cursor the jobs are read through."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from gigq_core.records import Execution, JobRecord
from gigq_core.transfer import ImportPlan, export_stream, refuse_non_empty
from gigq_sql.connection import Connection, Cursor
from gigq_sql.dialect import Dialect
from gigq_sql.rows import (
    EXECUTION_COLUMNS,
    execution_from_row,
    execution_values,
    job_from_row,
    job_import_values,
)

#: Jobs read per step of an export (with their dependencies and executions).
BATCH = 500

#: The statement whose rows `exported_jobs` reads (through the adapter's cursor).
EXPORT_JOBS = "SELECT {job_select}, cancelled_by FROM jobs ORDER BY seq"
_EXECUTIONS = (
    f"SELECT {EXECUTION_COLUMNS} FROM job_executions WHERE job_id {{any}}"
    " ORDER BY job_id, {execution_order}"
)
_INSERT_EXECUTION = (
    f"INSERT INTO job_executions ({EXECUTION_COLUMNS}) VALUES ({', '.join(['{p}'] * 12)})"
)


class JobsCursor(Cursor, Protocol):
    """A cursor of the adapter's choice for the jobs of an export (one that need not hold
    them all in memory)."""

    def execute(self, sql: str, /) -> Any:
        """Run the query."""
        ...


def export_items(conn: Connection, d: Dialect, cursor: JobsCursor) -> Iterator[dict[str, Any]]:
    """The queue as export items (gigq_core.transfer), read inside the caller's snapshot:
    the jobs through `cursor` (on the same connection), BATCH at a time."""
    kv, paused = kv_rows(conn), paused_rows(conn)
    cursor.execute(d.render(EXPORT_JOBS))
    yield from export_stream(exported_jobs(conn, d, cursor), kv, paused)


def exported_jobs(
    conn: Connection, d: Dialect, cursor: Cursor
) -> Iterator[tuple[JobRecord, str | None, list[Execution]]]:
    """Each job of `cursor` (rows of `EXPORT_JOBS`) with its `cancelled_by` and its
    executions, read BATCH jobs at a time."""
    while True:
        rows = cursor.fetchmany(BATCH)
        if not rows:
            return
        ids = [row[1] for row in rows]
        runs: dict[str, list[Execution]] = {}
        for row in conn.execute(d.render(_EXECUTIONS), (d.ids(ids),)):
            runs.setdefault(row[1], []).append(execution_from_row(d, row))
        recorded = [run for found in runs.values() for run in found]
        for job_id, running in d.running_executions(conn, ids, recorded).items():
            runs.setdefault(job_id, []).append(running)
        jobs = d.with_dependencies(conn, [row[:-1] for row in rows])
        for (row, deps), cancelled_by in zip(jobs, (row[-1] for row in rows), strict=True):
            job = job_from_row(d, row, deps)
            yield job, cancelled_by, runs.get(job.id, [])


def kv_rows(conn: Connection) -> list[tuple[str, str, str]]:
    """The key-value store, for an export."""
    rows = conn.execute("SELECT namespace, key, value FROM kv ORDER BY namespace, key")
    return [(namespace, key, value) for namespace, key, value in rows]


def paused_rows(conn: Connection) -> list[str]:
    """The paused queues, for an export."""
    return [queue for (queue,) in conn.execute("SELECT queue FROM paused_queues ORDER BY queue")]


def import_plan(
    conn: Connection, d: Dialect, url: str, plan: ImportPlan, attempt: int = 0
) -> dict[str, int]:
    """Write `plan` into the empty queue, inside the caller's write transaction; refused
    (TransferError) when it holds any job.

    On a retry (`attempt` > 0) the previous try may have committed without its
    acknowledgement arriving: jobs found stored are then this import's when the first
    and last planned jobs are there and nothing else is.
    """
    row = conn.execute("SELECT count(*) FROM jobs").fetchone()
    stored = int(row[0]) if row else 0
    if stored:
        if attempt > 0 and _is_this_import(conn, d, plan, stored):
            return plan.counts()
        refuse_non_empty(url, stored)
    conn.executemany(
        d.job_import,
        [
            job_import_values(d, p.record, blocked=p.blocked, cancelled_by=p.cancelled_by)
            for p in plan.jobs
        ],
    )
    d.insert_dependencies(conn, [(p.record.id, p.record.dependencies) for p in plan.jobs])
    if plan.jobs:
        d.imported(conn, max(p.record.seq for p in plan.jobs))
    conn.executemany(d.render(_INSERT_EXECUTION), [execution_values(d, e) for e in plan.executions])
    conn.executemany(d.render("{upsert_kv}"), plan.kv)
    conn.executemany(d.render("{pause}"), [(q,) for q in plan.paused])
    return plan.counts()


def _is_this_import(conn: Connection, d: Dialect, plan: ImportPlan, stored: int) -> bool:
    if stored != len(plan.jobs):
        return False
    ends = [plan.jobs[0].record.id, plan.jobs[-1].record.id]
    row = conn.execute(d.render("SELECT count(*) FROM jobs WHERE id {any}"), (d.ids(ends),))
    found: Any = row.fetchone()
    return found is not None and int(found[0]) == len(set(ends))


__all__ = [
    "BATCH",
    "EXPORT_JOBS",
    "JobsCursor",
    "export_items",
    "exported_jobs",
    "import_plan",
    "kv_rows",
    "paused_rows",
]
