"""Rows to records and back: named functions, one per record, and the column lists they
assume."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

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
    "dependencies",
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


def job_select(alias: str) -> str:
    """JOB_SELECT with every column qualified by a table alias."""
    return ", ".join(f"{alias}.{column}" for column in JOB_COLUMNS)


#: Columns of an INSERT INTO jobs (see `job_insert_values`).
JOB_INSERT_COLUMNS = (*JOB_COLUMNS[1:], "blocked", "cancelled_by")
JOB_INSERT = (
    f"INSERT INTO jobs ({', '.join(JOB_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(JOB_INSERT_COLUMNS))})"
)

EXECUTION_SELECT = (
    "id, job_id, attempt, worker_id, token, status, started_at, completed_at, result, "
    "error_type, error_message, error_traceback"
)
WORKER_SELECT = "id, host, pid, queues, concurrency, started_at, last_heartbeat, stopped_at"


def utc(value: datetime) -> datetime:
    """An aware datetime as UTC (connections use TimeZone UTC, so this rarely converts)."""
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def utc_opt(value: datetime | None) -> datetime | None:
    """Like `utc`, passing None through."""
    return None if value is None else utc(value)


def job_from_row(row: Sequence[Any]) -> JobRecord:
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
        dependencies,
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
        timeout=timeout,
        retry=retry,
        retry_params=retry_params,
        description=description,
        dependencies=tuple(dependencies),
        pass_parent_results=pass_parent_results,
        unique_key=unique_key,
        unique_scope=unique_scope,
        workflow_id=workflow_id,
        workflow_name=workflow_name,
        run_at=utc(run_at),
        created_at=utc(created_at),
        updated_at=utc(updated_at),
        started_at=utc_opt(started_at),
        completed_at=utc_opt(completed_at),
        worker_id=worker_id,
        token=token,
        lease_expires_at=utc_opt(lease_expires_at),
        result=result,
        error=error,
        cancel_requested=cancel_requested,
        handbacks=handbacks,
    )


def job_insert_values(
    job: JobRecord,
    *,
    dependencies: Sequence[str],
    status: JobStatus,
    now: datetime,
    blocked: int,
    error: str | None,
    cancelled_by: str | None,
) -> tuple[Any, ...]:
    """Values for JOB_INSERT: a new job as submitted, in its initial state."""
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
        list(dependencies),
        job.pass_parent_results,
        job.unique_key,
        job.unique_scope,
        job.workflow_id,
        job.workflow_name,
        job.run_at,
        now,  # created_at
        now,  # updated_at
        None,  # started_at
        now if status is JobStatus.CANCELLED else None,  # completed_at
        None,  # worker_id
        None,  # token
        None,  # lease_expires_at
        None,  # result
        error,
        False,  # cancel_requested
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
        started_at=utc(started_at),
        completed_at=utc_opt(completed_at),
        result=result,
        error=error,
    )


def worker_values(info: WorkerInfo) -> tuple[Any, ...]:
    """Values for a workers row, in WORKER_SELECT order."""
    return (
        info.id,
        info.host,
        info.pid,
        list(info.queues),
        info.concurrency,
        info.started_at,
        info.last_heartbeat,
        info.stopped_at,
    )


def worker_from_row(row: Sequence[Any], current_jobs: tuple[str, ...]) -> WorkerInfo:
    """A WorkerInfo from a row selected with WORKER_SELECT."""
    worker_id, host, pid, queues, concurrency, started_at, last_heartbeat, stopped_at = row
    return WorkerInfo(
        id=worker_id,
        host=host,
        pid=pid,
        queues=tuple(queues),
        concurrency=concurrency,
        started_at=utc(started_at),
        last_heartbeat=utc(last_heartbeat),
        stopped_at=utc_opt(stopped_at),
        current_jobs=current_jobs,
    )


def load_jobs(conn: psycopg.Connection, job_ids: Iterable[str]) -> dict[str, JobRecord]:
    """The jobs that exist among `job_ids`, by id (one query, whatever their number)."""
    ids = list(job_ids)
    if not ids:
        return {}
    rows = conn.execute(f"SELECT {JOB_SELECT} FROM jobs WHERE id = ANY(%s)", (ids,)).fetchall()
    return {row[1]: job_from_row(row) for row in rows}


__all__ = [
    "EXECUTION_SELECT",
    "JOB_COLUMNS",
    "JOB_INSERT",
    "JOB_SELECT",
    "WORKER_SELECT",
    "error_columns",
    "execution_from_row",
    "job_from_row",
    "job_insert_values",
    "job_select",
    "load_jobs",
    "utc",
    "utc_opt",
    "worker_from_row",
    "worker_values",
]
