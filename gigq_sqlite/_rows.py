"""Rows to records and back: named functions, one per record, and the column lists they
assume."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
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


# -- checked columns ------------------------------------------------------------------------
# SQLite keeps whatever a statement writes into a column, whatever its declared type: a row
# written by hand or by another program may hold text in a time column, a float in an integer
# one, a status GigQ does not know. Each column is checked as it is read, so such a row
# becomes one clear reason instead of an exception deep in the worker or the CLI.


class BadColumn(ValueError):
    """A column holds a value that its record field cannot take."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _text(column: str, value: Any) -> str:
    if not isinstance(value, str):
        raise BadColumn(f"{column} is {_show(value)}, not text")
    return value


def as_text(value: Any) -> str:
    """A queue or status name for counts: the text itself, or (for a value changed by hand
    that is not text, such as a blob) its repr, so counts never mix str and bytes keys."""
    return value if isinstance(value, str) else repr(value)


def _text_opt(column: str, value: Any) -> str | None:
    return None if value is None else _text(column, value)


def _int(column: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadColumn(f"{column} is {_show(value)}, not a whole number")
    return value


def _number_opt(column: str, value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise BadColumn(f"{column} is {_show(value)}, not a number of seconds")
    return float(value)


def read_time(column: str, value: Any) -> datetime:
    """The time in a REAL column (epoch seconds); BadColumn if it holds none."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            pass  # out of datetime's range (years 1 to 9999): reported below
    raise BadColumn(f"{column} is {_show(value)}, not a time")


def due_time(run_at: Any, now: datetime) -> datetime | None:
    """When a pending job with this run_at is due, for a worker's sleep: a value that holds
    no time (written by hand) is due now if it is a number in the past, so a claim meets it
    and ends it failed, and never otherwise (a time past year 9999, or text, which no
    claim's `run_at <= ?` ever selects)."""
    try:
        return read_time("run_at", run_at)
    except BadColumn:
        if isinstance(run_at, int | float) and run_at < to_ts(now):
            return now
        return None


def read_time_opt(column: str, value: Any) -> datetime | None:
    return None if value is None else read_time(column, value)


def _status(value: Any) -> JobStatus:
    try:
        return JobStatus(value)
    except ValueError:
        raise BadColumn(f"status is {_show(value)}, not a job state") from None


def job_from_row(row: Sequence[Any], dependencies: tuple[str, ...]) -> JobRecord:
    """A JobRecord from a row selected with JOB_SELECT; UnreadableJobError (naming the job
    and what is wrong) for a row that does not hold a job."""
    try:
        return _job(row, dependencies)
    except BadColumn as err:
        raise UnreadableJobError(str(row[1]), str(err)) from None


def job_or_stand_in(row: Sequence[Any], dependencies: tuple[str, ...]) -> JobRecord:
    """Like `job_from_row`, but a row that cannot be read gives an `UnreadableJob`
    stand-in, so a listing goes on past it."""
    try:
        return _job(row, dependencies)
    except BadColumn as err:
        seq, job_id, name = row[0], row[1], row[2]
        return UnreadableJob.stand_in(
            seq=seq if isinstance(seq, int) else 0,
            job_id=str(job_id),
            name=name if isinstance(name, str) else "",
            reason=str(err),
            dependencies=tuple(str(depends_on) for depends_on in dependencies),
        )


def _job(row: Sequence[Any], dependencies: tuple[str, ...]) -> JobRecord:
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
    for depends_on in dependencies:
        _text("a dependency", depends_on)
    return JobRecord(
        seq=seq,
        id=_text("id", job_id),
        name=_text("name", name),
        function=_text("function", function),
        params=_text("params", params),
        queue=_text("queue", queue),
        priority=_int("priority", priority),
        status=_status(status),
        attempts=_int("attempts", attempts),
        max_attempts=_int("max_attempts", max_attempts),
        timeout=_number_opt("timeout", timeout),
        retry=_text("retry", retry),
        retry_params=_text("retry_params", retry_params),
        description=_text("description", description),
        dependencies=dependencies,
        pass_parent_results=None if pass_parent_results is None else bool(pass_parent_results),
        unique_key=_text_opt("unique_key", unique_key),
        unique_scope=_text("unique_scope", unique_scope),
        workflow_id=_text_opt("workflow_id", workflow_id),
        workflow_name=_text_opt("workflow_name", workflow_name),
        run_at=read_time("run_at", run_at),
        created_at=read_time("created_at", created_at),
        updated_at=read_time("updated_at", updated_at),
        started_at=read_time_opt("started_at", started_at),
        completed_at=read_time_opt("completed_at", completed_at),
        worker_id=_text_opt("worker_id", worker_id),
        token=_text_opt("token", token),
        lease_expires_at=read_time_opt("lease_expires_at", lease_expires_at),
        result=_text_opt("result", result),
        error=_text_opt("error", error),
        cancel_requested=bool(cancel_requested),
        handbacks=_int("handbacks", handbacks),
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
            started_at=read_time("started_at", started_at),
            completed_at=read_time_opt("completed_at", completed_at),
            result=_text_opt("result", result),
            error=error,
        )
    except BadColumn as err:
        raise UnreadableJobError(str(job_id), f"one of its execution rows: {err}") from None


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
    """A WorkerInfo from a row selected with WORKER_SELECT; BadColumn if it holds none."""
    worker_id, host, pid, queues, concurrency, started_at, last_heartbeat, stopped_at = row
    try:
        served = json.loads(_text("queues", queues))
    except ValueError:
        served = None
    if not isinstance(served, list) or not all(isinstance(q, str) for q in served):
        raise BadColumn(f"queues is {_show(queues)}, not a JSON list of names")
    return WorkerInfo(
        id=_text("id", worker_id),
        host=_text("host", host),
        pid=_int("pid", pid),
        queues=tuple(served),
        concurrency=_int("concurrency", concurrency),
        started_at=read_time("started_at", started_at),
        last_heartbeat=read_time("last_heartbeat", last_heartbeat),
        stopped_at=read_time_opt("stopped_at", stopped_at),
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
    """Records for rows selected with JOB_SELECT followed by DEPENDENCIES_COLUMN (an
    `UnreadableJob` stand-in for a row that cannot be read)."""
    return [
        job_or_stand_in(row[:-1], () if row[-1] == "[]" else tuple(json.loads(row[-1])))
        for row in rows
    ]


def jobs_from_rows(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> list[JobRecord]:
    """Records for job rows (JOB_SELECT), their dependencies loaded in one query (an
    `UnreadableJob` stand-in for a row that cannot be read)."""
    if not rows:
        return []
    deps = load_dependencies(conn, (row[1] for row in rows))
    return [job_or_stand_in(row, tuple(deps.get(row[1], ()))) for row in rows]


def load_jobs(conn: sqlite3.Connection, job_ids: Iterable[str]) -> dict[str, JobRecord]:
    """The jobs that exist among `job_ids`, by id (two queries, whatever their number);
    an `UnreadableJob` stand-in for a row that cannot be read."""
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
    "BadColumn",
    "as_text",
    "due_time",
    "error_columns",
    "execution_from_row",
    "from_ts",
    "from_ts_opt",
    "id_list",
    "job_from_row",
    "job_insert_values",
    "job_or_stand_in",
    "jobs_from_rows",
    "jobs_with_dependencies",
    "load_dependencies",
    "load_jobs",
    "read_time",
    "to_ts",
    "to_ts_opt",
    "worker_from_row",
    "worker_values",
]
