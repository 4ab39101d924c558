"""Frozen records: what the storage port stores and returns."""

from __future__ import annotations

import enum
import os
import socket
from datetime import UTC, datetime
from typing import Any

import attrs


class JobStatus(enum.StrEnum):
    """The state of a job."""

    PENDING = "pending"
    #: Held by a worker that claimed it ahead of a free slot, not started yet (stored as
    #: running without `started_at`; see ports.Prefetch).
    RESERVED = "reserved"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"

    @property
    def is_final(self) -> bool:
        """True for a state a job leaves only through requeue."""
        return self in FINAL_STATUSES


#: States a job leaves only through requeue (completed leaves never).
FINAL_STATUSES = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMEOUT}
)
#: Final states that cancel a job's dependents.
BROKEN_STATUSES = frozenset({JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMEOUT})


#: Hand-backs of one job (a worker stopping while it runs) that do not count as an
#: attempt; each later one counts, and ends the job `failed` once no attempt is left
#: (docs/guarantees.md D4: restarts cannot loop a long job forever).
FREE_HANDBACKS = 3


def handed_back(attempts: int, handbacks: int, max_attempts: int) -> tuple[int, int, str | None]:
    """A hand-back's new (attempts, handbacks, error), the same on every adapter: the
    attempt is not counted for a job's first FREE_HANDBACKS hand-backs; a counted one that
    leaves no attempt ends the job failed with `error` (None: the job is pending again)."""
    if handbacks < FREE_HANDBACKS:
        attempts -= 1
    handbacks += 1
    if attempts < max_attempts:
        return attempts, handbacks, None
    return (
        attempts,
        handbacks,
        (f"handed back {handbacks} times by stopping workers, with no attempts left"),
    )


def cascade_reason(job_id: str, name: str, status: str) -> str:
    """The error text of a job cancelled because dependency `job_id` ended badly."""
    return f"dependency '{name}' ({job_id}) ended {status}"


def check_aware(instance: Any, attribute: attrs.Attribute[Any], value: datetime | None) -> None:
    """attrs validator: datetimes inside the core are timezone-aware."""
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{attribute.name} must be a timezone-aware datetime, got {value!r}")


def utc(value: datetime) -> datetime:
    """The same instant in UTC (a naive value is taken as local time)."""
    if value.tzinfo is None:
        value = value.astimezone()
    return value.astimezone(UTC)


@attrs.frozen(kw_only=True)
class ErrorInfo:
    """What went wrong in an attempt."""

    #: The exception's type name (qualified for non-builtins), e.g. "ValueError".
    type: str
    #: The exception's message.
    message: str
    #: The formatted traceback, or "" when there is none.
    traceback: str = ""

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        """Describe an exception, with its traceback. Never raises for the exception's own
        faults: a job's error whose `__str__` raises (or returns no string) is described
        by its type and a placeholder, so the worker records the failure instead of
        crashing with the job's error."""
        kind = type(exc)
        name = kind.__qualname__
        if kind.__module__ not in ("builtins", "__main__"):
            name = f"{kind.__module__}.{name}"
        return cls(type=name, message=_safe_message(exc), traceback=_safe_traceback(exc))


def _safe_message(exc: BaseException) -> str:
    """str(exc), or a placeholder naming its type when that fails."""
    try:
        message = str(exc)
    except KeyboardInterrupt:
        raise
    except BaseException:  # the job's code: whatever it raises, the worker goes on
        return f"<exception str() failed: {type(exc).__qualname__}>"
    return message


def _safe_traceback(exc: BaseException) -> str:
    """The formatted traceback, or the stack alone with the placeholder message when
    formatting the exception itself fails (it calls str() on the exception and its
    causes; Python guards Exception there, not BaseException)."""
    import traceback

    try:
        return "".join(traceback.format_exception(exc))
    except KeyboardInterrupt:
        raise
    except BaseException:  # as above: the job's __str__ raising anything
        try:
            stack = "".join(traceback.format_tb(exc.__traceback__))
        except Exception:
            stack = ""
        head = "Traceback (most recent call last):\n" if stack else ""
        return f"{head}{stack}{type(exc).__qualname__}: {_safe_message(exc)}\n"


#: The error of an attempt whose worker died.
WORKER_LOST = ErrorInfo(type="WorkerLost", message="worker lost")


@attrs.frozen(kw_only=True)
class JobRecord:
    """A job as the queue stores it."""

    #: UUID string, fixed at construction of the Job.
    id: str
    #: Human name.
    name: str
    #: Import path of the function, "package.module:qualname".
    function: str
    #: Serialized params (the queue's serializer; JSON text by default).
    params: str
    #: Named queue.
    queue: str = "default"
    #: Higher runs first.
    priority: int = 0
    #: Current state.
    status: JobStatus = JobStatus.PENDING
    #: Attempts started so far (a rescued or timed-out attempt counts).
    attempts: int = 0
    #: Attempts allowed in all.
    max_attempts: int = 3
    #: Seconds an attempt may run, or None for no limit.
    timeout: float | None = 300.0
    #: Retry strategy name.
    retry: str = "exponential_jitter"
    #: Retry strategy parameters, as JSON text.
    retry_params: str = "{}"
    #: Free text.
    description: str = ""
    #: Ids of the jobs this one waits for, in the order given.
    dependencies: tuple[str, ...] = ()
    #: Pass parent results: True, False, or None to decide from the signature.
    pass_parent_results: bool | None = None
    #: Deduplication key, or None.
    unique_key: str | None = None
    #: "active" or "success".
    unique_scope: str = "active"
    #: The workflow this job was submitted with, if any.
    workflow_id: str | None = None
    #: That workflow's name.
    workflow_name: str | None = None
    #: Not claimed before this instant.
    run_at: datetime = attrs.field(validator=check_aware)
    created_at: datetime = attrs.field(validator=check_aware)
    updated_at: datetime = attrs.field(validator=check_aware)
    #: When the current or last attempt started.
    started_at: datetime | None = attrs.field(default=None, validator=check_aware)
    #: When the job reached a final state.
    completed_at: datetime | None = attrs.field(default=None, validator=check_aware)
    #: The worker that runs (or last ran) it.
    worker_id: str | None = None
    #: The current attempt's token; None when not running.
    token: str | None = None
    #: When the running attempt's lease ends.
    lease_expires_at: datetime | None = attrs.field(default=None, validator=check_aware)
    #: Serialized return value, once completed.
    result: str | None = None
    #: The last error, as "Type: message", or a reason ("worker lost", "cancelled: ...").
    error: str | None = None
    #: A cancel was asked for while running.
    cancel_requested: bool = False
    #: Times a graceful shutdown handed the job back without counting the attempt (D4).
    handbacks: int = 0
    #: Submit order, assigned by the storage.
    seq: int = 0

    @property
    def function_module(self) -> str:
        """The module part of the function path."""
        return self.function.partition(":")[0]

    @property
    def function_name(self) -> str:
        """The qualified name part of the function path."""
        return self.function.partition(":")[2]


#: The times of an UnreadableJob, which has none that can be trusted.
_NO_TIME = datetime.fromtimestamp(0, UTC)


@attrs.frozen(kw_only=True)
class UnreadableJob(JobRecord):
    """A stand-in for a stored job row that cannot be read (written by hand or by another
    program: an unknown status, a time out of range, a column of the wrong type).

    Only `seq`, `id`, `dependencies` and (when it is text) `name` come from the stored
    job; `status` is FAILED and `error` says what is wrong, so code that only reads records
    sees a job that will not run. Nothing writes a record back from it; storage adapters
    return it where listing or getting must go on, and a worker never receives one.
    """

    #: What is wrong with the row, e.g. "created_at is 1e+300, not a time".
    reason: str

    @classmethod
    def stand_in(
        cls,
        *,
        seq: int,
        job_id: str,
        name: str,
        reason: str,
        dependencies: tuple[str, ...] = (),
    ) -> UnreadableJob:
        """The stand-in for row `seq` with id `job_id`."""
        return cls(
            seq=seq,
            id=job_id,
            name=name,
            dependencies=dependencies,
            function="",
            params="",
            status=JobStatus.FAILED,
            error=f"unreadable row: {reason}",
            run_at=_NO_TIME,
            created_at=_NO_TIME,
            updated_at=_NO_TIME,
            reason=reason,
        )


@attrs.frozen(kw_only=True)
class Execution:
    """One attempt at running a job."""

    #: UUID string.
    id: str
    job_id: str
    #: 1 for the first attempt.
    attempt: int
    worker_id: str
    #: The claim's token.
    token: str
    #: "running", "completed", "failed", "timeout", "cancelled", "lost" or "handed_back".
    status: str
    started_at: datetime = attrs.field(validator=check_aware)
    completed_at: datetime | None = attrs.field(default=None, validator=check_aware)
    #: Serialized result on success.
    result: str | None = None
    error: ErrorInfo | None = None


@attrs.frozen(kw_only=True)
class Outcome:
    """How an attempt ended, as the worker reports it to storage."""

    job_id: str
    #: The claim's token; a stale token makes the report a no-op (fencing).
    token: str
    #: "completed", "failed", "timeout", "cancelled" or "handed_back".
    status: str
    #: Serialized result, for "completed".
    result: str | None = None
    error: ErrorInfo | None = None
    #: For "failed"/"timeout": retry at this instant; None makes the failure final.
    retry_at: datetime | None = attrs.field(default=None, validator=check_aware)


@attrs.frozen(kw_only=True)
class Transition:
    """A committed change of one job, with the dependents it cancelled or revived."""

    #: The job after the change.
    job: JobRecord
    #: The status before the change.
    previous: JobStatus
    #: Dependents cancelled by this change, transitively, after the change.
    cancelled: tuple[JobRecord, ...] = ()
    #: Dependents revived (cancelled -> pending) by a requeue.
    revived: tuple[JobRecord, ...] = ()
    #: The error of the attempt that ended, if any.
    error: ErrorInfo | None = None


@attrs.frozen(kw_only=True)
class HeartbeatReply:
    """What a heartbeat learned about the jobs it renewed."""

    #: Job ids whose token no longer holds (rescued, cancelled, timed out elsewhere).
    lost: frozenset[str] = frozenset()
    #: Job ids still held but whose cancellation was asked for.
    cancel_requested: frozenset[str] = frozenset()


@attrs.frozen(kw_only=True)
class WorkerInfo:
    """A registered worker."""

    id: str
    host: str
    pid: int
    #: Queues served; () means every queue.
    queues: tuple[str, ...] = ()
    concurrency: int = 1
    started_at: datetime = attrs.field(validator=check_aware)
    last_heartbeat: datetime = attrs.field(validator=check_aware)
    #: Set when the worker stopped or was found dead.
    stopped_at: datetime | None = attrs.field(default=None, validator=check_aware)
    #: Ids of the jobs it is running (filled in by the storage when listing).
    current_jobs: tuple[str, ...] = ()

    def process_gone(self) -> bool:
        """True when the worker ran on this host and its process no longer exists (a
        worker of another host, or of another user, cannot be told from here: False)."""
        if self.host != socket.gethostname() or self.pid == os.getpid():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except (PermissionError, OverflowError):
            return False  # alive under another user; or a pid no process can have
        return False


@attrs.frozen(kw_only=True)
class WorkflowInfo:
    """A submitted workflow, summarised."""

    id: str
    name: str
    created_at: datetime = attrs.field(validator=check_aware)
    #: Count of its jobs per status value.
    counts: dict[str, int] = attrs.Factory(dict)


@attrs.frozen(kw_only=True)
class JobFilter:
    """Which jobs an operation applies to; None fields do not filter."""

    statuses: tuple[JobStatus, ...] | None = None
    queues: tuple[str, ...] | None = None
    name: str | None = None
    workflow_id: str | None = None
    #: Only jobs with this unique key (to name the job that holds one).
    unique_key: str | None = None
    #: Only jobs whose updated_at is before this instant.
    updated_before: datetime | None = attrs.field(default=None, validator=check_aware)
    #: Only jobs whose updated_at is at or after this instant.
    updated_after: datetime | None = attrs.field(default=None, validator=check_aware)


__all__ = [
    "BROKEN_STATUSES",
    "FINAL_STATUSES",
    "FREE_HANDBACKS",
    "WORKER_LOST",
    "ErrorInfo",
    "Execution",
    "HeartbeatReply",
    "JobFilter",
    "JobRecord",
    "JobStatus",
    "Outcome",
    "Transition",
    "UnreadableJob",
    "WorkerInfo",
    "WorkflowInfo",
    "cascade_reason",
    "check_aware",
    "handed_back",
    "utc",
]
