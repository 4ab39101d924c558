"""Storing submitted jobs: validation, unique-key deduplication and initial state.

Runs in one transaction opened by the caller. Where the dialect locks rows (PostgreSQL),
the stored jobs it reads (dependencies, unique-key holders) are locked FOR SHARE, so none
of them changes state until this transaction commits: a dependency cannot fail between the
read and the insert and leave a new dependent waiting forever, because its cascade then
runs after the commit and sees the new job. (SQLite's write lock, taken at BEGIN
IMMEDIATE, holds everything still.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from gigq_core.errors import (
    DependencyCycleError,
    InvalidJobError,
    UnknownDependencyError,
    UnreadableJobError,
)
from gigq_core.graph import find_cycle, topological_order
from gigq_core.records import BROKEN_STATUSES, JobRecord, JobStatus, cascade_reason
from gigq_sql.connection import Connection
from gigq_sql.dialect import Dialect
from gigq_sql.rows import job_insert_values

_TAKEN = "SELECT id, created_at FROM jobs WHERE id {any} ORDER BY seq"
_KNOWN = "SELECT id, name, status FROM jobs WHERE id {any} ORDER BY id{for_share}"
_UNIQUE_HOLDERS = """
SELECT id, name, status, unique_key FROM jobs
WHERE unique_key {any} AND {plus}status IN ('pending', 'running', 'completed')
ORDER BY seq{for_share}
"""
_KEY_HOLDERS = "SELECT unique_key, id, status FROM jobs WHERE unique_key {any} ORDER BY seq"

#: (name, status) of a job a new job may depend on.
_Known = tuple[str, JobStatus]


def insert_jobs(
    conn: Connection, d: Dialect, jobs: Sequence[JobRecord], now: datetime, attempt: int = 0
) -> list[str]:
    """Store `jobs` (the Storage.insert contract); on error the caller rolls back.

    On a retry (`attempt` > 0) the previous try may have committed without its
    acknowledgement arriving: when the batch's jobs are found stored, created at `now`,
    their ids are returned instead of refusing them as taken. Where a failed statement
    does not abort the transaction (`d.checks_before_writing` is False) and no job has a
    unique key, a reused id is left to the UNIQUE constraint: the caller catches the
    driver's error and calls `refuse_taken_ids`.
    """
    if not jobs:
        return []
    batch = {job.id: job for job in jobs}
    if len(batch) != len(jobs):
        raise InvalidJobError("two jobs in one submit have the same id")
    if d.checks_before_writing or any(job.unique_key is not None for job in jobs):
        # Checked before deduplication, which would otherwise hide a reused id.
        taken = conn.execute(d.render(_TAKEN), (d.ids(batch),)).fetchall()
        if taken:
            if attempt > 0 and all(created == d.time(now) for _, created in taken):
                return _already_stored(conn, d, jobs, {job_id for job_id, _ in taken})
            raise InvalidJobError(f"a job with id '{taken[0][0]}' already exists")
    known = _known_dependencies(conn, d, jobs, batch)
    has_links = any(job.dependencies for job in jobs)
    cycle = find_cycle({job.id: job.dependencies for job in jobs}) if has_links else None
    if cycle:
        _raise_cycle(cycle, batch)
    alias = _deduplicate(conn, d, jobs, known)
    stored = [job for job in jobs if job.id not in alias]
    edges = {job.id: tuple(alias.get(dep, dep) for dep in job.dependencies) for job in stored}
    # Deduplication can only join a chain back onto itself in contrived batches; refuse it
    # rather than store jobs that wait for each other forever.
    cycle = find_cycle(edges) if has_links and alias else None
    if cycle:
        _raise_cycle(cycle, batch)
    values: dict[str, tuple[object, ...]] = {}
    order = topological_order(list(edges), edges) if has_links else list(edges)
    for job_id in order:
        job, deps = batch[job_id], edges[job_id]
        blocked = sum(1 for dep in deps if known[dep][1] is not JobStatus.COMPLETED)
        broken = next((dep for dep in deps if known[dep][1] in BROKEN_STATUSES), None)
        status, error = JobStatus.PENDING, None
        if broken is not None:
            name, ended = known[broken]
            status, error = JobStatus.CANCELLED, cascade_reason(broken, name, ended.value)
        known[job.id] = (job.name, status)
        values[job_id] = job_insert_values(
            d,
            job,
            dependencies=deps,
            status=status,
            now=now,
            blocked=blocked,
            error=error,
            cancelled_by=broken,
        )
    # Rows go in the order given, so seq numbers them in that order.
    conn.executemany(d.job_insert, [values[job.id] for job in stored])
    d.insert_dependencies(conn, [(job.id, edges[job.id]) for job in stored])
    return [alias.get(job.id, job.id) for job in jobs]


def refuse_taken_ids(conn: Connection, d: Dialect, job_ids: Sequence[str]) -> None:
    """Raise InvalidJobError naming the first of `job_ids` already stored, if any."""
    taken = conn.execute(d.render(_TAKEN), (d.ids(job_ids),)).fetchone()
    if taken is not None:
        raise InvalidJobError(f"a job with id '{taken[0]}' already exists")


def _already_stored(
    conn: Connection, d: Dialect, jobs: Sequence[JobRecord], stored: set[str]
) -> list[str]:
    """The ids an insert that already committed returned: a deduplicated job's is its
    key holder's."""
    keys = [job.unique_key for job in jobs if job.id not in stored and job.unique_key]
    holders: dict[str, str] = {}
    if keys:
        for key, job_id, status in conn.execute(d.render(_KEY_HOLDERS), (d.ids(keys),)):
            if status in ("pending", "running", "completed"):
                holders[key] = job_id
    return [
        job.id if job.id in stored else holders.get(job.unique_key or "", job.id) for job in jobs
    ]


def _known_dependencies(
    conn: Connection, d: Dialect, jobs: Sequence[JobRecord], batch: Mapping[str, JobRecord]
) -> dict[str, _Known]:
    """Name and status of every stored job the batch depends on (locked until commit);
    unknown ids raise."""
    outside = sorted({dep for job in jobs for dep in job.dependencies if dep not in batch})
    known: dict[str, _Known] = {}
    if outside:
        rows = conn.execute(d.render(_KNOWN), (d.ids(outside),))
        known = {job_id: (name, _status(job_id, status)) for job_id, name, status in rows}
    for job in jobs:
        for dep in job.dependencies:
            if dep not in batch and dep not in known:
                raise UnknownDependencyError(f"job '{job.name}' depends on unknown job id '{dep}'")
    return known


def _status(job_id: str, status: str) -> JobStatus:
    """A dependency's status; UnreadableJobError for one GigQ does not know (a row changed
    by hand), which no new job can depend on."""
    try:
        return JobStatus(status)
    except ValueError:
        raise UnreadableJobError(job_id, f"status is {status!r}, not a job state") from None


def _deduplicate(
    conn: Connection, d: Dialect, jobs: Sequence[JobRecord], known: dict[str, _Known]
) -> dict[str, str]:
    """New job id -> id of the job holding its unique key, for jobs not to be stored.

    Decided in the order given: a stored job holds its key while pending or running (or
    completed, for a new job of scope "success"); a later job of the same call with the key
    of an earlier one deduplicates into it. Holders are added to `known`. Where two
    transactions can submit at once (PostgreSQL), concurrent submitters of one key meet at
    the jobs_unique_active index: the later one fails there, retries, and finds the earlier
    one's job here.
    """
    keys = sorted({job.unique_key for job in jobs if job.unique_key is not None})
    if not keys:
        return {}
    active: dict[str, tuple[str, str, JobStatus]] = {}
    done: dict[str, tuple[str, str, JobStatus]] = {}
    for job_id, name, status, key in conn.execute(d.render(_UNIQUE_HOLDERS), (d.ids(keys),)):
        row = (job_id, name, JobStatus(status))
        if row[2] is JobStatus.COMPLETED:
            done[key] = row  # rows come oldest first: the newest completed wins
        else:
            active[key] = row
    alias: dict[str, str] = {}
    claimed: dict[str, str] = {}
    for job in jobs:
        key = job.unique_key
        if key is None:
            continue
        holder = active.get(key)
        if holder is None and job.unique_scope == "success":
            holder = done.get(key)
        if holder is not None:
            alias[job.id] = holder[0]
            known[holder[0]] = (holder[1], holder[2])
        elif key in claimed:
            alias[job.id] = claimed[key]
        else:
            claimed[key] = job.id
    return alias


def _raise_cycle(cycle: Sequence[str], batch: Mapping[str, JobRecord]) -> None:
    names = " -> ".join(f"'{batch[i].name}'" if i in batch else f"'{i}'" for i in cycle)
    raise DependencyCycleError(f"the dependencies form a cycle: {names}")


__all__ = ["insert_jobs", "refuse_taken_ids"]
