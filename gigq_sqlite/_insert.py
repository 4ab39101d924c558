"""Storing submitted jobs: validation, unique-key deduplication and initial state."""

from __future__ import annotations

import sqlite3
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
from gigq_sqlite._rows import JOB_INSERT, id_list, job_insert_values

_UNIQUE_HOLDERS = """
SELECT id, name, status, unique_key FROM jobs
WHERE unique_key IN (SELECT value FROM json_each(?))
    AND +status IN ('pending', 'running', 'completed')
ORDER BY seq
"""

#: (name, status) of a job a new job may depend on.
_Known = tuple[str, JobStatus]


def insert_jobs(conn: sqlite3.Connection, jobs: Sequence[JobRecord], now: datetime) -> list[str]:
    """Store `jobs` (the Storage.insert contract); on error the caller rolls back."""
    if not jobs:
        return []
    batch = {job.id: job for job in jobs}
    if len(batch) != len(jobs):
        raise InvalidJobError("two jobs in one submit have the same id")
    if any(job.unique_key is not None for job in jobs):
        # Checked before deduplication, which would otherwise hide a reused id; without
        # unique keys the UNIQUE constraint on jobs.id catches it at no extra cost.
        _refuse_taken_ids(conn, batch)
    known = _known_dependencies(conn, jobs, batch)
    has_links = any(job.dependencies for job in jobs)
    cycle = find_cycle({job.id: job.dependencies for job in jobs}) if has_links else None
    if cycle:
        _raise_cycle(cycle, batch)
    alias = _deduplicate(conn, jobs, known)
    stored = [job for job in jobs if job.id not in alias]
    edges = {job.id: tuple(alias.get(d, d) for d in job.dependencies) for job in stored}
    # Deduplication can only join a chain back onto itself in contrived batches; refuse it
    # rather than store jobs that wait for each other forever.
    cycle = find_cycle(edges) if has_links and alias else None
    if cycle:
        _raise_cycle(cycle, batch)
    rows = []
    for job in _dependencies_first(stored, edges) if has_links else stored:
        deps = edges[job.id]
        statuses = [known[d][1] for d in deps]
        blocked = sum(1 for status in statuses if status is not JobStatus.COMPLETED)
        broken = next((d for d in deps if known[d][1] in BROKEN_STATUSES), None)
        status, error = JobStatus.PENDING, None
        if broken is not None:
            name, ended = known[broken]
            status, error = JobStatus.CANCELLED, cascade_reason(broken, name, ended.value)
        known[job.id] = (job.name, status)
        rows.append(
            (
                job,
                job_insert_values(
                    job, status=status, now=now, blocked=blocked, error=error, cancelled_by=broken
                ),
            )
        )
    order = {job.id: index for index, job in enumerate(jobs)}
    rows.sort(key=lambda item: order[item[0].id])
    try:
        conn.executemany(JOB_INSERT, [values for _, values in rows])
    except sqlite3.IntegrityError:
        _refuse_taken_ids(conn, batch)
        raise
    links = [
        (job.id, position, depends_on)
        for job, _ in rows
        for position, depends_on in enumerate(edges[job.id])
    ]
    if links:
        conn.executemany(
            "INSERT INTO dependencies (job_id, position, depends_on) VALUES (?, ?, ?)", links
        )
    return [alias.get(job.id, job.id) for job in jobs]


def _refuse_taken_ids(conn: sqlite3.Connection, batch: Mapping[str, JobRecord]) -> None:
    taken = conn.execute(
        "SELECT id FROM jobs WHERE id IN (SELECT value FROM json_each(?)) ORDER BY seq",
        (id_list(batch),),
    ).fetchone()
    if taken is not None:
        raise InvalidJobError(f"a job with id '{taken[0]}' already exists")


def _known_dependencies(
    conn: sqlite3.Connection, jobs: Sequence[JobRecord], batch: Mapping[str, JobRecord]
) -> dict[str, _Known]:
    """Name and status of every stored job the batch depends on; unknown ids raise."""
    outside = {d for job in jobs for d in job.dependencies if d not in batch}
    known: dict[str, _Known] = {}
    if outside:
        rows = conn.execute(
            "SELECT id, name, status FROM jobs WHERE id IN (SELECT value FROM json_each(?))",
            (id_list(outside),),
        )
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
    conn: sqlite3.Connection, jobs: Sequence[JobRecord], known: dict[str, _Known]
) -> dict[str, str]:
    """New job id -> id of the job holding its unique key, for jobs not to be stored.

    Decided in the order given: a stored job holds its key while pending or running (or
    completed, for a new job of scope "success"); a later job of the same call with the key of
    an earlier one deduplicates into it. Holders are added to `known`.
    """
    keys = {job.unique_key for job in jobs if job.unique_key is not None}
    if not keys:
        return {}
    active: dict[str, tuple[str, str, JobStatus]] = {}
    done: dict[str, tuple[str, str, JobStatus]] = {}
    for job_id, name, status, key in conn.execute(_UNIQUE_HOLDERS, (id_list(keys),)):
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


def _dependencies_first(
    jobs: Sequence[JobRecord], edges: Mapping[str, Sequence[str]]
) -> list[JobRecord]:
    by_id = {job.id: job for job in jobs}
    return [by_id[job_id] for job_id in topological_order(list(by_id), edges)]


__all__ = ["insert_jobs"]
