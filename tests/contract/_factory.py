"""Builders and small steps shared by the contract modules.

Each step drives the storage only through the port and checks that the step itself did
what the test relies on, so a broken setup fails where it happens.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from gigq_core.ports import Storage
from gigq_core.records import ErrorInfo, JobRecord, JobStatus, Outcome, Transition

#: The error the contract suite reports for failed attempts.
BOOM = ErrorInfo(type="ValueError", message="boom", traceback="Traceback: boom")

#: The lease the contract suite claims with, in seconds.
LEASE = 30.0


def job_record(now: datetime, **overrides: Any) -> JobRecord:
    """A valid JobRecord submitted at `now`, with a fresh id; `overrides` replace fields."""
    job_id = overrides.pop("id", None) or str(uuid.uuid4())
    fields: dict[str, Any] = {
        "id": job_id,
        "name": f"job-{job_id[:8]}",
        "function": "tests.jobs:noop",
        "params": "{}",
        "run_at": now,
        "created_at": now,
        "updated_at": now,
    }
    fields.update(overrides)
    return JobRecord(**fields)


def seconds(value: float) -> timedelta:
    """A timedelta of `value` seconds."""
    return timedelta(seconds=value)


def stored(storage: Storage, job_id: str) -> JobRecord:
    """The stored job, which must exist."""
    job = storage.get(job_id)
    assert job is not None, f"job {job_id} is not stored"
    return job


def claim_one(
    storage: Storage, now: datetime, job_id: str, worker_id: str = "w1", lease: float = LEASE
) -> JobRecord:
    """Claim exactly `job_id`, which must be the next ready job of its queue."""
    queue = stored(storage, job_id).queue
    claimed = storage.claim(worker_id, 1, now, lease, queues=[queue])
    assert [job.id for job in claimed] == [job_id], f"expected to claim {job_id}"
    return claimed[0]


def complete(
    storage: Storage, now: datetime, job_id: str, result: str = "42", worker_id: str = "w1"
) -> Transition:
    """Claim `job_id` and report it completed."""
    token = claim_one(storage, now, job_id, worker_id=worker_id).token
    assert token
    [transition] = storage.finish(
        [Outcome(job_id=job_id, token=token, status="completed", result=result)], now
    )
    assert transition is not None
    assert transition.job.status == JobStatus.COMPLETED
    return transition


def end_badly(storage: Storage, now: datetime, job_id: str, status: str) -> Transition:
    """Claim `job_id` and report its attempt `status` ("failed", "timeout", "cancelled")
    for good, without retry."""
    token = claim_one(storage, now, job_id).token
    assert token
    [transition] = storage.finish(
        [Outcome(job_id=job_id, token=token, status=status, error=BOOM)], now
    )
    assert transition is not None
    assert transition.job.status == JobStatus(status)
    return transition


def ids(records: Any) -> list[str]:
    """The ids of job records, in their order."""
    return [record.id for record in records]
