"""Export and import of a whole PostgreSQL queue (the optional `export()` / `import_()`
capabilities; the item format and the rebuilt bookkeeping are gigq_core.transfer's)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg

from gigq_core.records import Execution, JobRecord
from gigq_core.transfer import ImportPlan, export_stream, refuse_non_empty
from gigq_postgres._connection import Database
from gigq_postgres._rows import (
    EXECUTION_SELECT,
    JOB_COLUMNS,
    JOB_SELECT,
    error_columns,
    execution_from_row,
    job_from_row,
)

#: Jobs fetched per round trip of an export (with their executions).
BATCH = 500

_IMPORT_COLUMNS = (*JOB_COLUMNS, "blocked", "cancelled_by")
# seq is an identity column: the import keeps the source's numbers (then moves the
# sequence past them), so submit order survives the move.
_IMPORT_JOB = (
    f"INSERT INTO jobs ({', '.join(_IMPORT_COLUMNS)}) OVERRIDING SYSTEM VALUE "
    f"VALUES ({', '.join(['%s'] * len(_IMPORT_COLUMNS))})"
)
_IMPORT_EXECUTION = (
    f"INSERT INTO job_executions ({EXECUTION_SELECT}) VALUES ({', '.join(['%s'] * 12)})"
)


def export_items(db: Database) -> Iterator[dict[str, Any]]:
    """Stream the schema's queue as export items, from one REPEATABLE READ snapshot read
    through a server-side cursor (the jobs are never all in memory at once)."""
    with db.connection() as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        kv = conn.execute("SELECT namespace, key, value FROM kv ORDER BY namespace, key").fetchall()
        paused = [q for (q,) in conn.execute("SELECT queue FROM paused_queues ORDER BY queue")]
        yield from export_stream(_jobs(conn), kv, paused)


def _jobs(conn: psycopg.Connection) -> Iterator[tuple[JobRecord, str | None, list[Execution]]]:
    with conn.cursor(name="gigq_export") as cursor:
        cursor.execute(f"SELECT {JOB_SELECT}, cancelled_by FROM jobs ORDER BY seq")
        while True:
            rows = cursor.fetchmany(BATCH)
            if not rows:
                return
            ids = [row[1] for row in rows]
            runs: dict[str, list[Execution]] = {}
            for row in conn.execute(
                f"SELECT {EXECUTION_SELECT} FROM job_executions WHERE job_id = ANY(%s)"
                " ORDER BY job_id, started_at, seq",
                (ids,),
            ):
                runs.setdefault(row[1], []).append(execution_from_row(row))
            for row in rows:
                yield job_from_row(row[:-1]), row[-1], runs.get(row[1], [])


def import_plan(
    conn: psycopg.Connection, url: str, plan: ImportPlan, attempt: int
) -> dict[str, int]:
    """Write `plan` into the empty schema, inside the caller's transaction; refused
    (TransferError) when it holds any job.

    On a retry (`attempt` > 0) the previous try may have committed without its
    acknowledgement arriving: jobs found stored are then this import's when the first
    and last planned jobs are there and nothing else is.
    """
    row = conn.execute("SELECT count(*) FROM jobs").fetchone()
    stored = int(row[0]) if row else 0
    if stored:
        if attempt > 0 and _is_this_import(conn, plan, stored):
            return plan.counts()
        refuse_non_empty(url, stored)
    with conn.cursor() as cursor:
        cursor.executemany(
            _IMPORT_JOB,
            [_job_values(p.record, p.blocked, p.cancelled_by) for p in plan.jobs],
        )
        if plan.jobs:
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('jobs', 'seq'), %s)",
                (max(p.record.seq for p in plan.jobs),),
            )
        cursor.executemany(
            _IMPORT_EXECUTION,
            [
                (
                    e.id,
                    e.job_id,
                    e.attempt,
                    e.worker_id,
                    e.token,
                    e.status,
                    e.started_at,
                    e.completed_at,
                    e.result,
                    *error_columns(e.error),
                )
                for e in plan.executions
            ],
        )
        cursor.executemany(
            "INSERT INTO kv (namespace, key, value) VALUES (%s, %s, %s)"
            " ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
            plan.kv,
        )
        cursor.executemany(
            "INSERT INTO paused_queues (queue) VALUES (%s) ON CONFLICT DO NOTHING",
            [(q,) for q in plan.paused],
        )
    return plan.counts()


def _is_this_import(conn: psycopg.Connection, plan: ImportPlan, stored: int) -> bool:
    if stored != len(plan.jobs):
        return False
    ends = [plan.jobs[0].record.id, plan.jobs[-1].record.id]
    row = conn.execute("SELECT count(*) FROM jobs WHERE id = ANY(%s)", (ends,)).fetchone()
    return row is not None and int(row[0]) == len(set(ends))


def _job_values(job: JobRecord, blocked: int, cancelled_by: str | None) -> tuple[Any, ...]:
    """Values for _IMPORT_JOB: the record as it is, seq included."""
    return (
        job.seq,
        job.id,
        job.name,
        job.function,
        job.params,
        job.queue,
        job.priority,
        job.status.value,
        job.attempts,
        job.max_attempts,
        job.timeout,
        job.retry,
        job.retry_params,
        job.description,
        list(job.dependencies),
        job.pass_parent_results,
        job.unique_key,
        job.unique_scope,
        job.workflow_id,
        job.workflow_name,
        job.run_at,
        job.created_at,
        job.updated_at,
        job.started_at,
        job.completed_at,
        job.worker_id,
        job.token,
        job.lease_expires_at,
        job.result,
        job.error,
        job.cancel_requested,
        job.handbacks,
        blocked,
        cancelled_by,
    )


__all__ = ["BATCH", "export_items", "import_plan"]
