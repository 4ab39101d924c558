"""Jobs as plain JSON-able dicts: what `gigq list --json` and `gigq status --json` print, and
what the `gigq` facade's `list_jobs` and `get_status` return.

A job's dict holds every field a user reads (params and result decoded, timestamps as ISO
8601 in UTC, `dependencies` as a list) under the names the original GigQ used, plus
`exists: True`; a status adds `executions`, one dict per attempt, oldest first.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from gigq_core.errors import UnreadableJobError
from gigq_core.ports import Serializer
from gigq_core.records import Execution, JobRecord, UnreadableJob
from gigq_core.serializers import decode

#: The keys of a job's dict, in order.
JOB_KEYS = (
    "exists", "id", "name", "function", "function_name", "function_module", "status", "queue",
    "priority", "dependencies", "attempts", "max_attempts", "timeout", "params", "result",
    "error", "description", "retry", "retry_params", "unique_key", "unique_scope",
    "workflow_id", "workflow_name", "run_at", "created_at", "updated_at", "started_at",
    "completed_at", "worker_id", "cancel_requested",
)  # fmt: skip

#: The `status` of a listed job whose stored row cannot be read.
UNREADABLE = "unreadable"


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC (`+00:00`), or None."""
    return value.astimezone(UTC).isoformat() if value is not None else None


def job_dict(record: JobRecord, serializer: Serializer) -> dict[str, Any]:
    """The job as a flat dict; UnreadableJobError if its row cannot be read."""
    if isinstance(record, UnreadableJob):
        raise UnreadableJobError(record.id, record.reason)
    try:  # JSON whatever the queue's serializer
        retry_params = json.loads(record.retry_params)
    except (ValueError, RecursionError) as err:
        raise UnreadableJobError(record.id, f"its retry_params cannot be decoded ({err})") from None
    return {
        "exists": True,
        "id": record.id,
        "name": record.name,
        "function": record.function,
        "function_name": record.function_name,
        "function_module": record.function_module,
        "status": record.status.value,
        "queue": record.queue,
        "priority": record.priority,
        "dependencies": list(record.dependencies),
        "attempts": record.attempts,
        "max_attempts": record.max_attempts,
        "timeout": record.timeout,
        "params": decode(serializer, record.params, record.id, "params"),
        "result": decode(serializer, record.result, record.id, "result"),
        "error": record.error,
        "description": record.description,
        "retry": record.retry,
        "retry_params": retry_params,
        "unique_key": record.unique_key,
        "unique_scope": record.unique_scope,
        "workflow_id": record.workflow_id,
        "workflow_name": record.workflow_name,
        "run_at": iso(record.run_at),
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
        "started_at": iso(record.started_at),
        "completed_at": iso(record.completed_at),
        "worker_id": record.worker_id,
        "cancel_requested": record.cancel_requested,
    }


def execution_dict(execution: Execution, serializer: Serializer) -> dict[str, Any]:
    """One attempt as a flat dict: its error split into message, type and traceback."""
    error = execution.error
    return {
        "id": execution.id,
        "attempt": execution.attempt,
        "worker_id": execution.worker_id,
        "status": execution.status,
        "started_at": iso(execution.started_at),
        "completed_at": iso(execution.completed_at),
        "result": decode(serializer, execution.result, execution.job_id, "result"),
        "error": str(error) if error else None,
        "error_type": error.type if error else None,
        "traceback": error.traceback if error else None,
    }


def status_dict(
    record: JobRecord, executions: Iterable[Execution], serializer: Serializer
) -> dict[str, Any]:
    """The job's dict with its `executions`; UnreadableJobError if its row cannot be read."""
    info = job_dict(record, serializer)
    info["executions"] = [execution_dict(e, serializer) for e in executions]
    return info


def listed_job_dict(record: JobRecord, serializer: Serializer) -> dict[str, Any]:
    """The job's dict, or for one whose row cannot be read a stand-in: its id, status
    "unreadable", what is wrong as its error, every other field None."""
    try:
        return job_dict(record, serializer)
    except UnreadableJobError as err:  # listed as such; the other jobs still are
        info: dict[str, Any] = dict.fromkeys(JOB_KEYS)
        info.update(exists=True, id=record.id, status=UNREADABLE, error=err.reason, dependencies=[])
        return info


__all__ = [
    "JOB_KEYS",
    "UNREADABLE",
    "execution_dict",
    "iso",
    "job_dict",
    "listed_job_dict",
    "status_dict",
]
