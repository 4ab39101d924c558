"""Rows to records and back: named functions, one per record, and the column lists they
assume."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.adapt import Buffer, Loader
from psycopg.pq import Format

from gigq_core.errors import UnreadableJobError
from gigq_core.records import (
    ErrorInfo,
    Execution,
    JobRecord,
    JobStatus,
    UnreadableJob,
    WorkerInfo,
)

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


# -- checked columns ------------------------------------------------------------------------
# PostgreSQL's column types keep most wrong values out, but a row changed by hand can still
# hold a status GigQ does not know, a timeout that is NaN or infinite, a NULL in the
# dependencies array, or a time Python cannot hold ('infinity', years past 9999). Each
# column is checked as it is read, so such a row becomes one clear reason instead of an
# exception deep in the worker or the CLI.


class BadColumn(ValueError):
    """A column holds a value that its record field cannot take."""


class OutOfRange:
    """A timestamptz value that Python's datetime cannot hold, as the server wrote it."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return repr(self.text)


def register_loaders(conn: psycopg.Connection) -> None:
    """Make `conn` load a timestamptz out of datetime's range as an OutOfRange value, so one
    such row no longer fails the whole query that reads it."""
    oid = conn.adapters.types["timestamptz"].oid
    for fmt in (Format.TEXT, Format.BINARY):
        base = conn.adapters.get_loader(oid, fmt)
        if base is None or issubclass(base, _CheckedLoader):
            continue
        checked: type[Loader] = type(
            f"Checked{base.__name__}", (_CheckedLoader,), {"base": base, "format": fmt}
        )
        conn.adapters.register_loader(oid, checked)


class _CheckedLoader(Loader):
    base: type[Loader]

    def __init__(self, oid: int, context: Any = None) -> None:
        super().__init__(oid, context)
        self._inner = self.base(oid, context)

    def load(self, data: Buffer) -> Any:
        try:
            return self._inner.load(data)
        except psycopg.DataError:
            if self.format is Format.TEXT:
                return OutOfRange(bytes(data).decode("utf-8", "replace"))
            return OutOfRange("a time out of range")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def read_time(column: str, value: Any) -> datetime:
    """A timestamptz column's value as an aware UTC datetime; BadColumn if it holds none."""
    if isinstance(value, datetime):
        return utc(value)
    raise BadColumn(f"{column} is {_show(value)}, not a time")


def due_time(run_at: Any, now: datetime) -> datetime | None:
    """When a pending job with this run_at is due, for a worker's sleep: a time Python
    cannot hold is due now if it lies in the past ('-infinity', a year BC), so a claim
    meets it and ends it failed, and never otherwise ('infinity', years past 9999)."""
    if isinstance(run_at, datetime):
        return utc(run_at)
    text = getattr(run_at, "text", "")
    return now if text.startswith("-") or text.endswith(" BC") else None


def read_time_opt(column: str, value: Any) -> datetime | None:
    """Like `read_time`, passing None through."""
    return None if value is None else read_time(column, value)


def _status(value: Any) -> JobStatus:
    try:
        return JobStatus(value)
    except ValueError:
        raise BadColumn(f"status is {_show(value)}, not a job state") from None


def _seconds_opt(column: str, value: float | None) -> float | None:
    if value is not None and (not math.isfinite(value) or value < 0):
        raise BadColumn(f"{column} is {_show(value)}, not a number of seconds")
    return value


def _ids(column: str, values: Any) -> tuple[str, ...]:
    if not all(isinstance(value, str) for value in values):
        raise BadColumn(f"{column} holds {_show(values)}, not only job ids")
    return tuple(values)


def job_from_row(row: Sequence[Any]) -> JobRecord:
    """A JobRecord from a row selected with JOB_SELECT; UnreadableJobError (naming the job
    and what is wrong) for a row that does not hold a job."""
    try:
        return _job(row)
    except BadColumn as err:
        raise UnreadableJobError(str(row[1]), str(err)) from None


def job_or_stand_in(row: Sequence[Any]) -> JobRecord:
    """Like `job_from_row`, but a row that cannot be read gives an `UnreadableJob`
    stand-in, so a listing goes on past it."""
    try:
        return _job(row)
    except BadColumn as err:
        dependencies = row[14]
        return UnreadableJob.stand_in(
            seq=row[0],
            job_id=row[1],
            name=row[2],
            reason=str(err),
            dependencies=tuple(d for d in dependencies or () if isinstance(d, str)),
        )


def _job(row: Sequence[Any]) -> JobRecord:
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
        status=_status(status),
        attempts=attempts,
        max_attempts=max_attempts,
        timeout=_seconds_opt("timeout", timeout),
        retry=retry,
        retry_params=retry_params,
        description=description,
        dependencies=_ids("dependencies", dependencies),
        pass_parent_results=pass_parent_results,
        unique_key=unique_key,
        unique_scope=unique_scope,
        workflow_id=workflow_id,
        workflow_name=workflow_name,
        run_at=read_time("run_at", run_at),
        created_at=read_time("created_at", created_at),
        updated_at=read_time("updated_at", updated_at),
        started_at=read_time_opt("started_at", started_at),
        completed_at=read_time_opt("completed_at", completed_at),
        worker_id=worker_id,
        token=token,
        lease_expires_at=read_time_opt("lease_expires_at", lease_expires_at),
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
    try:
        return Execution(
            id=execution_id,
            job_id=job_id,
            attempt=attempt,
            worker_id=worker_id,
            token=token,
            status=status,
            started_at=read_time("started_at", started_at),
            completed_at=read_time_opt("completed_at", completed_at),
            result=result,
            error=error,
        )
    except BadColumn as err:
        raise UnreadableJobError(job_id, f"one of its execution rows: {err}") from None


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
    """A WorkerInfo from a row selected with WORKER_SELECT; BadColumn if it holds none."""
    worker_id, host, pid, queues, concurrency, started_at, last_heartbeat, stopped_at = row
    return WorkerInfo(
        id=worker_id,
        host=host,
        pid=pid,
        queues=_ids("queues", queues),
        concurrency=concurrency,
        started_at=read_time("started_at", started_at),
        last_heartbeat=read_time("last_heartbeat", last_heartbeat),
        stopped_at=read_time_opt("stopped_at", stopped_at),
        current_jobs=current_jobs,
    )


def load_jobs(conn: psycopg.Connection, job_ids: Iterable[str]) -> dict[str, JobRecord]:
    """The jobs that exist among `job_ids`, by id (one query, whatever their number); an
    `UnreadableJob` stand-in for a row that cannot be read."""
    ids = list(job_ids)
    if not ids:
        return {}
    rows = conn.execute(f"SELECT {JOB_SELECT} FROM jobs WHERE id = ANY(%s)", (ids,)).fetchall()
    return {row[1]: job_or_stand_in(row) for row in rows}


__all__ = [
    "EXECUTION_SELECT",
    "JOB_COLUMNS",
    "JOB_INSERT",
    "JOB_SELECT",
    "WORKER_SELECT",
    "BadColumn",
    "OutOfRange",
    "due_time",
    "error_columns",
    "execution_from_row",
    "job_from_row",
    "job_insert_values",
    "job_or_stand_in",
    "job_select",
    "load_jobs",
    "read_time",
    "register_loaders",
    "utc",
    "utc_opt",
    "worker_from_row",
    "worker_values",
]
