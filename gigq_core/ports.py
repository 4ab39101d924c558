"""Ports: the only ways the core touches persistence, serialization, retry timing and time.

Adapters do not inherit from these protocols; they conform structurally, and mypy checks it
wherever an adapter is returned as a `Storage`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from gigq_core.records import (
    ErrorInfo,
    Execution,
    HeartbeatReply,
    JobFilter,
    JobRecord,
    Outcome,
    Transition,
    WorkerInfo,
    WorkflowInfo,
)


class JobStore(Protocol):
    """Jobs: storing them, their lifecycle (claims, leases, outcomes, rescue, cancel,
    requeue) and reading them back."""

    #: The URL or path this storage was opened from, for messages.
    url: str

    def insert(self, jobs: Sequence[JobRecord], now: datetime) -> list[str]:
        """Store new jobs atomically and return their ids, in the order given.

        Each record's `id`, `dependencies`, `unique_key`/`unique_scope` and fields are taken
        as given; `status`, `attempts`, `seq` and timestamps are set by the storage
        (`created_at = updated_at = now`, `seq` increasing in the order given).

        - A dependency may name a stored job or another job of the same call.
          An unknown dependency raises UnknownDependencyError, a cycle DependencyCycleError,
          an id already stored InvalidJobError; then nothing is stored.
        - A job with a `unique_key` that an existing job holds (pending or running; or also
          completed when the new job's scope is "success") is not stored: its returned id is
          the existing job's, and dependencies in the same call that named it point at the
          existing job instead. Failed and cancelled jobs never hold a key.
        - A job with a dependency already failed, cancelled or timed out is stored
          `cancelled`, its `error` naming that dependency.
        """
        ...

    def claim(
        self,
        worker_id: str,
        limit: int,
        now: datetime,
        lease: float,
        queues: Sequence[str] | None = None,
    ) -> list[JobRecord]:
        """Claim up to `limit` ready jobs for `worker_id` and return them, in claim order.

        Ready: pending, `run_at <= now`, every dependency completed, its queue not paused,
        and in `queues` (None: any queue). Order: highest priority first, then submit order.
        Each claimed job becomes running with attempts + 1, a fresh `token`,
        `worker_id`, `started_at = now`, `lease_expires_at = now + lease`, and gets a new
        execution record with status "running". No job is returned to two callers.
        """
        ...

    def finish(self, outcomes: Sequence[Outcome], now: datetime) -> list[Transition | None]:
        """Apply the outcomes of attempts, all in one transaction; one entry per outcome.

        An outcome applies only if its job is running with that token; otherwise (the
        attempt was rescued, timed out, cancelled or already reported) its entry is None and
        nothing changes (fencing). The execution record gets the outcome's status, result,
        error and `completed_at = now`.

        - "completed": the job is completed with its result; dependents whose dependencies
          are now all completed become ready.
        - "failed" / "timeout" with `retry_at`: the job is pending again, not before
          `retry_at`, with the error kept. Without `retry_at` it ends with that status and
          its dependents are cancelled transitively (`Transition.cancelled`).
        - "cancelled": the job ends cancelled, dependents cancelled transitively.
        - "handed_back": the job is pending again at once; the attempt is not counted unless
          the job was already handed back 3 times (docs/guarantees.md D4). A counted hand-back
          that leaves no attempt ends the job failed instead (error "handed back N times by
          stopping workers, with no attempts left"), its dependents cancelled.
        """
        ...

    def finish_and_claim(
        self,
        outcomes: Sequence[Outcome],
        now: datetime,
        worker_id: str,
        limit: int,
        lease: float,
        queues: Sequence[str] | None = None,
    ) -> tuple[list[Transition | None], list[JobRecord]]:
        """`finish(outcomes, now)` then `claim(worker_id, limit, now, lease, queues)`, as one
        transaction (one commit where two would do): the outcomes are durable before any
        job claimed here starts. Returns both results."""
        ...

    def heartbeat(
        self, worker_id: str, held: Mapping[str, str], now: datetime, lease: float
    ) -> HeartbeatReply:
        """Record that the worker is alive and renew the leases of the jobs it holds.

        `held` maps job id to token. A job still running under that token gets
        `lease_expires_at = now + lease`; the others are reported as `lost`. Held jobs with
        a pending cancel request are reported in `cancel_requested`.
        """
        ...

    def rescue(self, now: datetime, worker_ids: Sequence[str] = ()) -> list[Transition]:
        """Return jobs of dead workers to pending; returns what changed, in seq order.

        Rescued: every running job whose lease expired before `now`, and every running job
        of the workers in `worker_ids` (known dead). The lost attempt counts: the job is
        pending again if attempts remain, else failed; either way its error and its execution
        record say "worker lost". Workers in `worker_ids` are marked stopped.
        """
        ...

    def cancel(self, job_ids: Sequence[str], now: datetime, reason: str) -> list[Transition]:
        """Cancel jobs; returns a transition for each job that changed, in the order given.

        A pending job becomes cancelled (error: `reason`) and its dependents are cancelled
        transitively. A running job keeps running with `cancel_requested` set; its worker
        stops it. Finished and unknown jobs are left alone and omitted.
        """
        ...

    def requeue(self, job_ids: Sequence[str], now: datetime) -> list[Transition]:
        """Put failed, timed-out or cancelled jobs back to pending; returns what changed.

        Attempts, result, error, worker and timestamps of the attempt are reset, `run_at`
        becomes `now` unless it is still ahead (a schedule is kept), and the dependents that
        this job's end cancelled are revived (transitively). Pending, running, completed
        and unknown jobs are omitted.

        A job with a dependency still failed, timed out or cancelled would wait forever, so
        it is not requeued (nor revived): it stays cancelled, its error naming that
        dependency, and requeueing the dependency revives it. A job whose unique key an
        active job holds is left unchanged and omitted.
        """
        ...

    def get(self, job_id: str) -> JobRecord | None:
        """The job with that id, or None."""
        ...

    def get_many(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        """The jobs that exist among `job_ids`, by id."""
        ...

    def results(self, job_ids: Sequence[str], max_bytes: int) -> tuple[int, dict[str, str]]:
        """The stored results of the jobs among `job_ids`, read only if they fit.

        Returns the total size in bytes (UTF-8) of the results of the jobs that exist among
        `job_ids` (each job counted once; a job without a result counts 0), and, when that
        total is at most `max_bytes`, those results by id (jobs without one left out). Over
        `max_bytes`, the dict is empty and no result is read into memory.
        """
        ...

    def executions(self, job_id: str) -> list[Execution]:
        """The job's execution records, oldest first; [] for an unknown job."""
        ...

    def list_jobs(
        self, where: JobFilter, limit: int = 100, offset: int = 0, order: str = "newest"
    ) -> list[JobRecord]:
        """Jobs matching `where`; order "newest" (default) or "oldest" by submit order,
        or "priority" (claim order)."""
        ...

    def count(self, where: JobFilter) -> dict[str, int]:
        """Count of matching jobs per status value (statuses with no job may be absent)."""
        ...

    def queue_counts(self) -> dict[str, dict[str, int]]:
        """Count of jobs per queue name and status value, queues sorted by name."""
        ...

    def find_ids(self, prefix: str, limit: int = 2) -> list[str]:
        """Up to `limit` ids that start with `prefix`, sorted."""
        ...

    def next_due(self, now: datetime, queues: Sequence[str] | None = None) -> datetime | None:
        """The earliest `run_at` of a pending job without unfinished dependencies, or None."""
        ...

    def list_workflows(self, limit: int = 100) -> list[WorkflowInfo]:
        """Workflows with their job counts, newest first."""
        ...

    def prune(self, before: datetime, statuses: Sequence[str]) -> int:
        """Delete jobs in `statuses` last updated before `before`, with their executions.

        A job that an unfinished job depends on is kept. Returns how many were deleted.
        """
        ...


class WorkerRegistry(Protocol):
    """The workers that run jobs from this store, for `gigq workers` and rescue."""

    def register_worker(self, info: WorkerInfo) -> None:
        """Record a worker (replacing a record with the same id)."""
        ...

    def deregister_worker(self, worker_id: str, now: datetime) -> None:
        """Mark the worker stopped at `now`."""
        ...

    def list_workers(self, since: datetime | None = None) -> list[WorkerInfo]:
        """Workers still registered, or stopped after `since`; with their current jobs."""
        ...


class QueueControl(Protocol):
    """Pausing and resuming queues."""

    def set_queue_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume a queue; a paused queue keeps its jobs and none is claimed."""
        ...

    def paused_queues(self) -> frozenset[str]:
        """Names of the paused queues."""
        ...


class KeyValueStore(Protocol):
    """A small key-value store for plugin state (gigq-cron keeps its schedules there)."""

    def kv_get(self, namespace: str, key: str) -> str | None:
        """A value of the key-value store for plugin state, or None."""
        ...

    def kv_set(self, namespace: str, key: str, value: str | None) -> None:
        """Set a value (None deletes it)."""
        ...

    def kv_items(self, namespace: str) -> dict[str, str]:
        """All keys and values of a namespace."""
        ...


class WakeUp(Protocol):
    """Waiting for work without polling."""

    def wait_for_work(self, timeout: float) -> bool:
        """Block up to `timeout` seconds until a job may have become ready.

        Returns True early when something changed (a submit, a finish, a requeue), False
        when the timeout passed. Spurious True is allowed; callers claim to find out.
        """
        ...


@runtime_checkable
class Storage(JobStore, WorkerRegistry, QueueControl, KeyValueStore, WakeUp, Protocol):
    """Persistence of jobs, in domain terms.

    Every method is atomic: it commits all of its effect or none of it. Every method that
    needs the time takes it from the caller (`now`, an aware UTC datetime), so a fake clock
    drives the storage in tests. Unknown ids are never an error unless a method says so.
    Lifecycle rules (what state may follow what) live here, as conditional writes.

    A storage is every role below (`JobStore`, `WorkerRegistry`, `QueueControl`,
    `KeyValueStore`, `WakeUp`) plus `close`; code that needs one role takes that role.
    Optional capabilities are protocols of their own, listed after this class and checked
    with `isinstance` (`capability(storage, Diagnosable)`).

    A stored job that cannot be read as a record (a row changed by hand: an unknown status,
    a time out of range, a column of the wrong type) never stops the others. The reads
    (`get`, `get_many`, `list_jobs`) return an `UnreadableJob` stand-in for it. `claim`,
    `rescue` and `finish` never hand one to a worker: a running job that cannot be read ends
    failed (its error "unreadable row: ...", its dependents cancelled, its other columns
    left for an operator to fix or delete), is logged once at ERROR, and the call goes on
    (a claim fills the slot it took with the next ready job). `export()` raises
    `UnreadableJobError` naming it.
    """

    def close(self) -> None:
        """Release connections; the object may not be used afterwards."""
        ...


# -- optional capabilities ---------------------------------------------------------------
# An adapter has one when it has the method (or attribute); callers check with isinstance.


@runtime_checkable
class DeferredFinish(Protocol):
    """Group commit off the write lock: `finish_deferred` commits without waiting for the
    disk, and `sync` waits until every commit so far is durable (a worker's syncer thread
    calls it, and fires the jobs' hooks only after it returns)."""

    def finish_deferred(
        self, outcomes: Sequence[Outcome], now: datetime
    ) -> list[Transition | None]:
        """As `JobStore.finish`, but the commit may not be durable until `sync()`."""
        ...

    def sync(self) -> None:
        """Wait until every commit made so far is durable."""
        ...


@runtime_checkable
class Prefetch(Protocol):
    """Claiming ahead of free slots: jobs held by a worker but not started ("reserved").

    A reserved job keeps `status = "running"` in the store with `started_at` unset, and is
    read back as `JobStatus.RESERVED`: its attempt is not counted until `start`, it holds
    its unique key, its lease is renewed by `heartbeat` like a running job's, `rescue`
    returns it to pending without counting an attempt or a hand-back, and `cancel` cancels
    it at once (it never started). `list_jobs`, `count` and `queue_counts` show it as
    "reserved".
    """

    def claim_ahead(
        self,
        worker_id: str,
        start: int,
        reserve: int,
        now: datetime,
        lease: float,
        queues: Sequence[str] | None,
        functions: Sequence[str],
    ) -> tuple[list[JobRecord], list[JobRecord]]:
        """In one transaction: claim up to `start` ready jobs as `claim` does (running, an
        attempt counted), then reserve up to `reserve` more among the ready jobs whose
        function is in `functions`, in the same order (a job of another function is
        skipped, not waited for). A reserved job gets a fresh token, `worker_id` and
        `lease_expires_at = now + lease`; `started_at` is unset. Returns (started,
        reserved)."""
        ...

    def start(self, worker_id: str, jobs: Sequence[JobRecord], now: datetime) -> list[JobRecord]:
        """Start reserved jobs (`jobs`: their records as `claim_ahead` returned them): each
        still reserved under its token becomes running with attempts + 1,
        `started_at = now` (never before a dependency's `completed_at`) and a running
        execution record, keeping the reservation's token and lease. Returns the started
        records; a job cancelled, rescued or released meanwhile is left out (fencing).

        The commit need not survive a power loss, but must survive a crash of the calling
        process: a rescuer then counts the attempt of a job that had started."""
        ...

    def release(self, held: Mapping[str, str], now: datetime) -> list[str]:
        """Hand reserved jobs back (`held`: job id to token): each still reserved under
        that token is pending again (token, worker and lease cleared; attempts, hand-backs,
        error and `run_at` unchanged), nothing counted. Returns the ids released."""
        ...


@runtime_checkable
class IndependentHandles(Protocol):
    """Opening the same URL again gives an independent connection to the same store, so a
    worker's heartbeat and watcher threads never queue behind its loop."""

    independent_handles: bool


@runtime_checkable
class PermissionChecked(Protocol):
    """The store lives in files whose owners and modes decide who may inject jobs."""

    def permission_problem(self) -> str | None:
        """Why running jobs from this store is unsafe (other users own or may write its
        files), or None."""
        ...


@runtime_checkable
class Diagnosable(Protocol):
    """Health checks for `gigq doctor`."""

    def diagnose(self) -> list[dict[str, Any]]:
        """Checks as dicts with `check`, `level` ("ok", "warn" or "fail"), `detail` and
        `fix` (one line; empty when there is nothing to do)."""
        ...


@runtime_checkable
class Backup(Protocol):
    """Online, consistent copies (`gigq backup`)."""

    def backup(self, path: str | os.PathLike[str]) -> None:
        """Copy the store to a new file at `path`; refused if it exists."""
        ...


@runtime_checkable
class Upgradable(Protocol):
    """Schema migrations that do not run on open (`gigq upgrade`)."""

    def upgrade(self) -> dict[str, Any]:
        """Apply them in one transaction, refused while workers are live; returns
        `from_version`, `to_version` and `applied`."""
        ...


@runtime_checkable
class Transfer(Protocol):
    """The whole queue as a stream of JSON-able items, and such a stream stored exactly
    into an empty store in one transaction (`gigq migrate`; the item format and the rules
    are in gigq_core.transfer)."""

    def export(self) -> Iterator[dict[str, Any]]:
        """Every job, execution, worker, paused queue and key of the store, from one
        snapshot."""
        ...

    def import_(
        self, items: Iterable[Mapping[str, Any]], now: datetime | None = None
    ) -> dict[str, int]:
        """Store an export into this empty store; counts per kind."""
        ...


#: Every optional capability, for the documentation and the contract tests.
CAPABILITIES: tuple[type, ...] = (
    DeferredFinish,
    Prefetch,
    IndependentHandles,
    PermissionChecked,
    Diagnosable,
    Backup,
    Upgradable,
    Transfer,
)


class Serializer(Protocol):
    """Turns params and results into text and back."""

    name: str

    def dumps(self, obj: Any) -> str:
        """Serialize; raise SerializationError for a value it cannot encode exactly."""
        ...

    def loads(self, data: str) -> Any:
        """Deserialize what `dumps` produced."""
        ...


class RetryStrategy(Protocol):
    """Decides when a failed attempt runs again."""

    def delay(self, attempt: int, error: ErrorInfo) -> float | None:
        """Seconds to wait before the next attempt, or None for no retry.

        `attempt` is the number of the attempt that just failed (1 for the first).
        """
        ...


class Clock(Protocol):
    """The time, injectable."""

    def now(self) -> datetime:
        """The current time, an aware UTC datetime."""
        ...

    def monotonic(self) -> float:
        """Seconds on a monotonic clock."""
        ...


__all__ = [
    "CAPABILITIES",
    "Backup",
    "Clock",
    "DeferredFinish",
    "Diagnosable",
    "IndependentHandles",
    "JobStore",
    "KeyValueStore",
    "PermissionChecked",
    "Prefetch",
    "QueueControl",
    "RetryStrategy",
    "Serializer",
    "Storage",
    "Transfer",
    "Upgradable",
    "WakeUp",
    "WorkerRegistry",
]
