"""Export and import of a whole SQLite queue (the optional `export()` / `import_()`
capabilities; the item format and the rebuilt bookkeeping are gigq_core.transfer's)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from gigq_core.records import JobRecord
from gigq_core.transfer import ImportPlan, export_stream, plan_import, refuse_non_empty
from gigq_sqlite import _connection
from gigq_sqlite._errors import translate
from gigq_sqlite._lifecycle import running_executions
from gigq_sqlite._rows import (
    EXECUTION_SELECT,
    JOB_COLUMNS,
    JOB_SELECT,
    error_columns,
    execution_from_row,
    id_list,
    job_from_row,
    load_dependencies,
    to_ts,
    to_ts_opt,
)

#: Jobs read per step of an export (with their dependencies and executions).
BATCH = 500

_IMPORT_COLUMNS = (*JOB_COLUMNS, "blocked", "cancelled_by")
_IMPORT_JOB = (
    f"INSERT INTO jobs ({', '.join(_IMPORT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_IMPORT_COLUMNS))})"
)
_IMPORT_EXECUTION = (
    f"INSERT INTO job_executions ({EXECUTION_SELECT}) VALUES ({', '.join('?' * 12)})"
)


def export_items(path: str, busy_timeout: float) -> Iterator[dict[str, Any]]:
    """Stream the database at `path` as export items, from one read snapshot.

    Reads through a read-only connection of its own, so the storage's shared connection
    (and its lock) stays free while the consumer works between items.
    """
    uri = f"file:{quote(os.path.abspath(path))}?mode=ro"
    try:
        conn = _connection.open_connection(uri, busy_timeout)
    except sqlite3.Error as err:
        raise translate(err, path) from err
    try:
        conn.execute("BEGIN")  # one snapshot for the whole export
        yield from export_stream(_jobs(conn, path), _kv(conn), _paused(conn))
    except sqlite3.Error as err:
        raise translate(err, path) from err
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


def _jobs(conn: sqlite3.Connection, path: str) -> Iterator[tuple[JobRecord, str | None, list[Any]]]:
    cursor = conn.execute(f"SELECT {JOB_SELECT}, cancelled_by FROM jobs ORDER BY seq")
    while True:
        rows = cursor.fetchmany(BATCH)
        if not rows:
            return
        ids = [row[1] for row in rows]
        deps = load_dependencies(conn, ids)
        runs: dict[str, list[Any]] = {}
        for row in conn.execute(
            f"SELECT {EXECUTION_SELECT} FROM job_executions"
            " WHERE job_id IN (SELECT value FROM json_each(?))"
            " ORDER BY job_id, started_at, rowid",
            (id_list(ids),),
        ):
            runs.setdefault(row[1], []).append(execution_from_row(row))
        recorded = [run for found in runs.values() for run in found]
        for job_id, running in running_executions(conn, ids, recorded).items():
            runs.setdefault(job_id, []).append(running)
        for row in rows:
            job = job_from_row(row[:-1], tuple(deps.get(row[1], ())))
            yield job, row[-1], runs.get(job.id, [])


def _kv(conn: sqlite3.Connection) -> Iterator[tuple[str, str, str]]:
    yield from conn.execute("SELECT namespace, key, value FROM kv ORDER BY namespace, key")


def _paused(conn: sqlite3.Connection) -> Iterator[str]:
    for (queue,) in conn.execute("SELECT queue FROM paused_queues ORDER BY queue"):
        yield queue


def import_items(
    db: _connection.Database,
    url: str,
    items: Iterable[Mapping[str, Any]],
    now: datetime | None,
) -> dict[str, int]:
    """SqliteStorage.import_: plan the items (gigq_core.transfer), then write them in one
    BEGIN IMMEDIATE transaction."""
    plan = plan_import(items, now or datetime.now(UTC))
    return db.write(lambda conn: import_plan(conn, url, plan))


def import_plan(conn: sqlite3.Connection, url: str, plan: ImportPlan) -> dict[str, int]:
    """Write `plan` into an empty database, inside the caller's BEGIN IMMEDIATE
    transaction; refused (TransferError) when the database holds any job."""
    (jobs,) = conn.execute("SELECT count(*) FROM jobs").fetchone()
    refuse_non_empty(url, jobs)
    conn.executemany(
        _IMPORT_JOB,
        [_job_values(p.record, p.blocked, p.cancelled_by) for p in plan.jobs],
    )
    conn.executemany(
        "INSERT INTO dependencies (job_id, position, depends_on) VALUES (?, ?, ?)",
        [
            (p.record.id, position, depends_on)
            for p in plan.jobs
            for position, depends_on in enumerate(p.record.dependencies)
        ],
    )
    conn.executemany(
        _IMPORT_EXECUTION,
        [
            (
                e.id,
                e.job_id,
                e.attempt,
                e.worker_id,
                e.token,
                e.status,
                to_ts(e.started_at),
                to_ts_opt(e.completed_at),
                e.result,
                *error_columns(e.error),
            )
            for e in plan.executions
        ],
    )
    conn.executemany("INSERT OR REPLACE INTO kv (namespace, key, value) VALUES (?, ?, ?)", plan.kv)
    conn.executemany(
        "INSERT OR IGNORE INTO paused_queues (queue) VALUES (?)", [(q,) for q in plan.paused]
    )
    return plan.counts()


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
        None if job.pass_parent_results is None else int(job.pass_parent_results),
        job.unique_key,
        job.unique_scope,
        job.workflow_id,
        job.workflow_name,
        to_ts(job.run_at),
        to_ts(job.created_at),
        to_ts(job.updated_at),
        to_ts_opt(job.started_at),
        to_ts_opt(job.completed_at),
        job.worker_id,
        job.token,
        to_ts_opt(job.lease_expires_at),
        job.result,
        job.error,
        int(job.cancel_requested),
        job.handbacks,
        blocked,
        cancelled_by,
    )


__all__ = ["BATCH", "export_items", "import_items", "import_plan"]
