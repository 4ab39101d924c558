"""Rows to records and back: named functions, one per record, and the columns they assume.

Every column is checked as it is read: a row written by hand or by another program may
hold text in a time column, a float in an integer one, a status GigQ does not know, a time
Python cannot hold. Such a row becomes one clear reason instead of an exception deep in
the worker or the CLI.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from gigq_core.errors import UnreadableJobError
from gigq_core.records import (
    ErrorInfo,
    Execution,
    JobRecord,
    JobStatus,
    UnreadableJob,
    WorkerInfo,
)
from gigq_sql.connection import Connection
from gigq_sql.dialect import BadColumn, Dialect, show

#: The jobs columns every job row starts with, in this order (see `job_from_row`).
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
#: Columns written besides the record's: bookkeeping of dependencies and requeue.
BOOKKEEPING_COLUMNS = ("blocked", "cancelled_by")

EXECUTION_COLUMNS = (
    "id, job_id, attempt, worker_id, token, status, started_at, completed_at, result, "
    "error_type, error_message, error_traceback"
)
WORKER_COLUMNS = "id, host, pid, queues, concurrency, started_at, last_heartbeat, stopped_at"


def _text(column: str, value: Any) -> str:
    if not isinstance(value, str):
        raise BadColumn(f"{column} is {show(value)}, not text")
    return value


def _text_opt(column: str, value: Any) -> str | None:
    return None if value is None else _text(column, value)


def as_text(value: Any) -> str:
    """A queue or status name for counts: the text itself, or (for a value changed by hand
    that is not text, such as a blob) its repr, so counts never mix str and bytes keys."""
    return value if isinstance(value, str) else repr(value)


def _int(column: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadColumn(f"{column} is {show(value)}, not a whole number")
    return value


def _seconds_opt(column: str, value: Any) -> float | None:
    if value is None:
        return None
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < 0
    ):
        raise BadColumn(f"{column} is {show(value)}, not a number of seconds")
    return float(value)


def _status(value: Any, started_at: Any) -> JobStatus:
    """The stored state; a running row without `started_at` is a reservation (which is
    never stored under a name of its own)."""
    try:
        status = JobStatus(value)
    except ValueError:
        status = None
    if status is None or status is JobStatus.RESERVED:
        raise BadColumn(f"status is {show(value)}, not a job state")
    if status is JobStatus.RUNNING and started_at is None:
        return JobStatus.RESERVED
    return status


def job_from_row(d: Dialect, row: Sequence[Any], dependencies: Sequence[Any]) -> JobRecord:
    """A JobRecord from a row selected with `d.job_select` (its JOB_COLUMNS) and its
    dependencies; UnreadableJobError (naming the job and what is wrong) for a row that
    does not hold a job."""
    try:
        return _job(d, row, dependencies)
    except BadColumn as err:
        raise UnreadableJobError(str(row[1]), str(err)) from None


def job_or_stand_in(d: Dialect, row: Sequence[Any], dependencies: Sequence[Any]) -> JobRecord:
    """Like `job_from_row`, but a row that cannot be read gives an `UnreadableJob`
    stand-in, so a listing goes on past it."""
    try:
        return _job(d, row, dependencies)
    except BadColumn as err:
        seq, job_id, name = row[0], row[1], row[2]
        return UnreadableJob.stand_in(
            seq=seq if isinstance(seq, int) else 0,
            job_id=str(job_id),
            name=name if isinstance(name, str) else "",
            reason=str(err),
            dependencies=tuple(str(dep) for dep in dependencies if dep is not None),
        )


def _job(d: Dialect, row: Sequence[Any], dependencies: Sequence[Any]) -> JobRecord:
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
    ) = row[: len(JOB_COLUMNS)]
    d.check_dependencies(dependencies)
    return JobRecord(
        seq=seq,
        id=_text("id", job_id),
        name=_text("name", name),
        function=_text("function", function),
        params=_text("params", params),
        queue=_text("queue", queue),
        priority=_int("priority", priority),
        status=_status(status, started_at),
        attempts=_int("attempts", attempts),
        max_attempts=_int("max_attempts", max_attempts),
        timeout=_seconds_opt("timeout", timeout),
        retry=_text("retry", retry),
        retry_params=_text("retry_params", retry_params),
        description=_text("description", description),
        dependencies=tuple(dependencies),
        pass_parent_results=None if pass_parent_results is None else bool(pass_parent_results),
        unique_key=_text_opt("unique_key", unique_key),
        unique_scope=_text("unique_scope", unique_scope),
        workflow_id=_text_opt("workflow_id", workflow_id),
        workflow_name=_text_opt("workflow_name", workflow_name),
        run_at=d.read_time("run_at", run_at),
        created_at=d.read_time("created_at", created_at),
        updated_at=d.read_time("updated_at", updated_at),
        started_at=d.read_time_opt("started_at", started_at),
        completed_at=d.read_time_opt("completed_at", completed_at),
        worker_id=_text_opt("worker_id", worker_id),
        token=_text_opt("token", token),
        lease_expires_at=d.read_time_opt("lease_expires_at", lease_expires_at),
        result=_text_opt("result", result),
        error=_text_opt("error", error),
        cancel_requested=bool(cancel_requested),
        handbacks=_int("handbacks", handbacks),
    )


def job_import_values(
    d: Dialect, job: JobRecord, *, blocked: int, cancelled_by: str | None
) -> tuple[Any, ...]:
    """Values for `d.job_import`: the record as it is, seq included."""
    return d.job_values(
        (
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
            None if job.pass_parent_results is None else d.flag(job.pass_parent_results),
            job.unique_key,
            job.unique_scope,
            job.workflow_id,
            job.workflow_name,
            d.time(job.run_at),
            d.time(job.created_at),
            d.time(job.updated_at),
            d.time_opt(job.started_at),
            d.time_opt(job.completed_at),
            job.worker_id,
            job.token,
            d.time_opt(job.lease_expires_at),
            job.result,
            job.error,
            d.flag(job.cancel_requested),
            job.handbacks,
            blocked,
            cancelled_by,
        ),
        job.dependencies,
    )


def job_insert_values(
    d: Dialect,
    job: JobRecord,
    *,
    dependencies: Sequence[str],
    status: JobStatus,
    now: datetime,
    blocked: int,
    error: str | None,
    cancelled_by: str | None,
) -> tuple[Any, ...]:
    """Values for `d.job_insert`: a new job as submitted, in its initial state."""
    ts = d.time(now)
    return d.job_values(
        (
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
            None if job.pass_parent_results is None else d.flag(job.pass_parent_results),
            job.unique_key,
            job.unique_scope,
            job.workflow_id,
            job.workflow_name,
            d.time(job.run_at),
            ts,  # created_at
            ts,  # updated_at
            None,  # started_at
            ts if status is JobStatus.CANCELLED else None,  # completed_at
            None,  # worker_id
            None,  # token
            None,  # lease_expires_at
            None,  # result
            error,
            d.flag(False),  # cancel_requested
            0,  # handbacks
            blocked,
            cancelled_by,
        ),
        dependencies,
    )


def error_columns(error: ErrorInfo | None) -> tuple[str | None, str | None, str | None]:
    """An ErrorInfo as (type, message, traceback) columns."""
    if error is None:
        return None, None, None
    return error.type, error.message, error.traceback


def execution_from_row(d: Dialect, row: Sequence[Any]) -> Execution:
    """An Execution from a row selected with EXECUTION_COLUMNS; UnreadableJobError naming
    its job for a row that does not hold one."""
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
    try:
        error = None
        if error_type is not None:
            error = ErrorInfo(
                type=_text("error_type", error_type),
                message=_text_opt("error_message", error_message) or "",
                traceback=_text_opt("error_traceback", error_traceback) or "",
            )
        return Execution(
            id=_text("id", execution_id),
            job_id=_text("job_id", job_id),
            attempt=_int("attempt", attempt),
            worker_id=_text("worker_id", worker_id),
            token=_text("token", token),
            status=_text("status", status),
            started_at=d.read_time("started_at", started_at),
            completed_at=d.read_time_opt("completed_at", completed_at),
            result=_text_opt("result", result),
            error=error,
        )
    except BadColumn as err:
        raise UnreadableJobError(str(job_id), f"one of its execution rows: {err}") from None


def execution_values(d: Dialect, execution: Execution) -> tuple[Any, ...]:
    """Values for an execution row, in EXECUTION_COLUMNS order."""
    return (
        execution.id,
        execution.job_id,
        execution.attempt,
        execution.worker_id,
        execution.token,
        execution.status,
        d.time(execution.started_at),
        d.time_opt(execution.completed_at),
        execution.result,
        *error_columns(execution.error),
    )


def worker_values(d: Dialect, info: WorkerInfo) -> tuple[Any, ...]:
    """Values for a workers row, in WORKER_COLUMNS order."""
    return (
        info.id,
        info.host,
        info.pid,
        d.names(info.queues),
        info.concurrency,
        d.time(info.started_at),
        d.time(info.last_heartbeat),
        d.time_opt(info.stopped_at),
    )


def worker_from_row(d: Dialect, row: Sequence[Any], current_jobs: tuple[str, ...]) -> WorkerInfo:
    """A WorkerInfo from a row selected with WORKER_COLUMNS; BadColumn if it holds none."""
    worker_id, host, pid, queues, concurrency, started_at, last_heartbeat, stopped_at = row
    return WorkerInfo(
        id=_text("id", worker_id),
        host=_text("host", host),
        pid=_int("pid", pid),
        queues=d.read_names("queues", queues),
        concurrency=_int("concurrency", concurrency),
        started_at=d.read_time("started_at", started_at),
        last_heartbeat=d.read_time("last_heartbeat", last_heartbeat),
        stopped_at=d.read_time_opt("stopped_at", stopped_at),
        current_jobs=current_jobs,
    )


def jobs_from_rows(conn: Connection, d: Dialect, rows: Sequence[Sequence[Any]]) -> list[JobRecord]:
    """Records for rows selected with `d.job_select` (an `UnreadableJob` stand-in for a row
    that cannot be read)."""
    if not rows:
        return []
    return [job_or_stand_in(d, row, deps) for row, deps in d.with_dependencies(conn, rows)]


def jobs_with_dependencies(d: Dialect, rows: Iterable[Sequence[Any]]) -> list[JobRecord]:
    """Records for rows selected with `d.job_select_with_dependencies` (an `UnreadableJob`
    stand-in for a row that cannot be read)."""
    return [job_or_stand_in(d, row, d.dependencies_of(row[-1])) for row in rows]


_LOAD_JOBS = "SELECT {job_select} FROM jobs WHERE id {any}"


def load_jobs(conn: Connection, d: Dialect, job_ids: Iterable[str]) -> dict[str, JobRecord]:
    """The jobs that exist among `job_ids`, by id; an `UnreadableJob` stand-in for a row
    that cannot be read."""
    ids = list(job_ids)
    if not ids:
        return {}
    rows = conn.execute(d.render(_LOAD_JOBS), (d.ids(ids),)).fetchall()
    return {job.id: job for job in jobs_from_rows(conn, d, rows)}


__all__ = [
    "BOOKKEEPING_COLUMNS",
    "EXECUTION_COLUMNS",
    "JOB_COLUMNS",
    "WORKER_COLUMNS",
    "as_text",
    "error_columns",
    "execution_from_row",
    "execution_values",
    "job_from_row",
    "job_import_values",
    "job_insert_values",
    "job_or_stand_in",
    "jobs_from_rows",
    "jobs_with_dependencies",
    "load_jobs",
    "worker_from_row",
    "worker_values",
]
