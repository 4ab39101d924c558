"""Rows to records and back: named functions, one per record, and the column lists they
assume."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from gigq_core.records import ErrorInfo, Execution, JobRecord, JobStatus, WorkerInfo

#: The jobs columns every job query selects, in this order (see `job_from_row`).
JOB_COLUMNS = (
    "seq",
    "id",
    "name",
    "function",
    "params",
    "queue",
    "priority",
    "status",
    "attempts",
    "max_attempts",
    "timeout",
    "retry",
    "retry_params",
    "description",
    "pass_parent_results",
    "unique_key",
    "unique_scope",
    "workflow_id",
    "workflow_name",
    "run_at",
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
    "worker_id",
    "token",
    "lease_expires_at",
    "result",
    "error",
    "cancel_requested",
    "handbacks",
)
JOB_SELECT = ", ".join(JOB_COLUMNS)

#: Columns of an INSERT INTO jobs (see `job_insert_values`).
JOB_INSERT_COLUMNS = (*JOB_COLUMNS[1:], "blocked", "cancelled_by")
JOB_INSERT = (
    f"INSERT INTO jobs ({', '.join(JOB_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(JOB_INSERT_COLUMNS))})"
)

EXECUTION_SELECT = (
    "id, job_id, attempt, worker_id, token, status, started_at, completed_at, result, "
    "error_type, error_message, error_traceback"
)
WORKER_SELECT = "id, host, pid, queues, concurrency, started_at, last_heartbeat, stopped_at"


def to_ts(value: datetime) -> float:
    """An aware datetime as unix epoch seconds."""
    return value.timestamp()


def to_ts_opt(value: datetime | None) -> float | None:
    """Like `to_ts`, passing None through."""
    return None if value is None else value.timestamp()


def from_ts(value: float) -> datetime:
    """Unix epoch seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(value, UTC)


def from_ts_opt(value: float | None) -> datetime | None:
    """Like `from_ts`, passing None through."""
    return None if value is None else datetime.fromtimestamp(value, UTC)


def id_list(ids: Iterable[str]) -> str:
    """A list of ids as one JSON parameter, for `IN (SELECT value FROM json_each(?))`.

    One parameter keeps one prepared statement for any number of ids.
    """
    return json.dumps(list(ids))


def job_from_row(row: Sequence[Any], dependencies: tuple[str, ...]) -> JobRecord:
    """A JobRecord from a row selected with JOB_SELECT."""
    (
        seq,
        job_id,
        name,
        function,
        params,
        queue,
        priority,
        status,
        attempts,
        max_attempts,
        timeout,
        retry,
        retry_params,
        description,
        pass_parent_results,
        unique_key,
        unique_scope,
        workflow_id,
        workflow_name,
        run_at,
        created_at,
        updated_at,
        started_at,
        completed_at,
        worker_id,
        token,
        lease_expires_at,
        result,
        error,
        cancel_requested,
        handbacks,
    ) = row
    return JobRecord(
        seq=seq,
        id=job_id,
        name=name,
        function=function,
        params=params,
        queue=queue,
        priority=priority,
        status=JobStatus(status),
        attempts=attempts,
        max_attempts=max_attempts,
        timeout=None if timeout is None else float(timeout),
        retry=retry,
        retry_params=retry_params,
        description=description,
        dependencies=dependencies,
        pass_parent_results=None if pass_parent_results is None else bool(pass_parent_results),
        unique_key=unique_key,
        unique_scope=unique_scope,
        workflow_id=workflow_id,
        workflow_name=workflow_name,
        run_at=from_ts(run_at),
        created_at=from_ts(created_at),
        updated_at=from_ts(updated_at),
        started_at=from_ts_opt(started_at),
        completed_at=from_ts_opt(completed_at),
        worker_id=worker_id,
        token=token,
        lease_expires_at=from_ts_opt(lease_expires_at),
        result=result,
        error=error,
        cancel_requested=bool(cancel_requested),
        handbacks=handbacks,
    )


def job_insert_values(
    job: JobRecord,
    *,
    status: JobStatus,
    now: datetime,
    blocked: int,
    error: str | None,
    cancelled_by: str | None,
) -> tuple[Any, ...]:
    """Values for JOB_INSERT: a new job as submitted, in its initial state."""
    ts = to_ts(now)
    return (
        job.id,
        job.name,
        job.function,
        job.params,
        job.queue,
        job.priority,
        status.value,
        0,  # attempts
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
        ts,  # created_at
        ts,  # updated_at
        None,  # started_at
        ts if status is JobStatus.CANCELLED else None,  # completed_at
        None,  # worker_id
        None,  # token
        None,  # lease_expires_at
        None,  # result
        error,
        0,  # cancel_requested
        0,  # handbacks
        blocked,
        cancelled_by,
    )


def error_columns(error: ErrorInfo | None) -> tuple[str | None, str | None, str | None]:
    """An ErrorInfo as (type, message, traceback) columns."""
    if error is None:
        return None, None, None
    return error.type, error.message, error.traceback


def execution_from_row(row: Sequence[Any]) -> Execution:
    """An Execution from a row selected with EXECUTION_SELECT."""
    (
        execution_id,
        job_id,
        attempt,
        worker_id,
        token,
        status,
        started_at,
        completed_at,
        result,
        error_type,
        error_message,
        error_traceback,
    ) = row
    error = None
    if error_type is not None:
        error = ErrorInfo(
            type=error_type, message=error_message or "", traceback=error_traceback or ""
        )
    return Execution(
        id=execution_id,
        job_id=job_id,
        attempt=attempt,
        worker_id=worker_id,
        token=token,
        status=status,
        started_at=from_ts(started_at),
        completed_at=from_ts_opt(completed_at),
        result=result,
        error=error,
    )


def worker_values(info: WorkerInfo) -> tuple[Any, ...]:
    """Values for a workers row, in WORKER_SELECT order."""
    return (
        info.id,
        info.host,
        info.pid,
        json.dumps(list(info.queues)),
        info.concurrency,
        to_ts(info.started_at),
        to_ts(info.last_heartbeat),
        to_ts_opt(info.stopped_at),
    )


def worker_from_row(row: Sequence[Any], current_jobs: tuple[str, ...]) -> WorkerInfo:
    """A WorkerInfo from a row selected with WORKER_SELECT."""
    worker_id, host, pid, queues, concurrency, started_at, last_heartbeat, stopped_at = row
    return WorkerInfo(
        id=worker_id,
        host=host,
        pid=pid,
        queues=tuple(json.loads(queues)),
        concurrency=concurrency,
        started_at=from_ts(started_at),
        last_heartbeat=from_ts(last_heartbeat),
        stopped_at=from_ts_opt(stopped_at),
        current_jobs=current_jobs,
    )


def load_dependencies(conn: sqlite3.Connection, job_ids: Iterable[str]) -> dict[str, list[str]]:
    """The dependencies of each job among `job_ids`, in the order they were given."""
    found: dict[str, list[str]] = {}
    ids = list(job_ids)
    if len(ids) == 1:  # a single claim: skip the JSON round trip
        rows = conn.execute(
            "SELECT job_id, depends_on FROM dependencies WHERE job_id = ? ORDER BY position",
            (ids[0],),
        )
    else:
        rows = conn.execute(
            "SELECT job_id, depends_on FROM dependencies"
            " WHERE job_id IN (SELECT value FROM json_each(?)) ORDER BY job_id, position",
            (id_list(ids),),
        )
    for job_id, depends_on in rows:
        found.setdefault(job_id, []).append(depends_on)
    return found


#: A column to select after JOB_SELECT: the job's dependencies as a JSON array, in order
#: (`jobs_with_dependencies` reads it), saving a second query on hot paths.
DEPENDENCIES_COLUMN = (
    "(SELECT json_group_array(depends_on) FROM"
    " (SELECT depends_on FROM dependencies d WHERE d.job_id = jobs.id ORDER BY position))"
)


def jobs_with_dependencies(rows: Iterable[Sequence[Any]]) -> list[JobRecord]:
    """Records for rows selected with JOB_SELECT followed by DEPENDENCIES_COLUMN."""
    return [
        job_from_row(row[:-1], () if row[-1] == "[]" else tuple(json.loads(row[-1])))
        for row in rows
    ]


def jobs_from_rows(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> list[JobRecord]:
    """Records for job rows (JOB_SELECT), their dependencies loaded in one query."""
    if not rows:
        return []
    deps = load_dependencies(conn, (row[1] for row in rows))
    return [job_from_row(row, tuple(deps.get(row[1], ()))) for row in rows]


def load_jobs(conn: sqlite3.Connection, job_ids: Iterable[str]) -> dict[str, JobRecord]:
    """The jobs that exist among `job_ids`, by id (two queries, whatever their number)."""
    rows = conn.execute(
        f"SELECT {JOB_SELECT} FROM jobs WHERE id IN (SELECT value FROM json_each(?))",
        (id_list(job_ids),),
    ).fetchall()
    return {job.id: job for job in jobs_from_rows(conn, rows)}


__all__ = [
    "DEPENDENCIES_COLUMN",
    "EXECUTION_SELECT",
    "JOB_COLUMNS",
    "JOB_INSERT",
    "JOB_SELECT",
    "WORKER_SELECT",
    "error_columns",
    "execution_from_row",
    "from_ts",
    "from_ts_opt",
    "id_list",
    "job_from_row",
    "job_insert_values",
    "jobs_from_rows",
    "jobs_with_dependencies",
    "load_dependencies",
    "load_jobs",
    "to_ts",
    "to_ts_opt",
    "worker_from_row",
    "worker_values",
]
