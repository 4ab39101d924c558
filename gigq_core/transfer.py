"""Moving a queue from one storage to another: the item stream of the optional storage
capabilities `export()` and `import_()` (`gigq migrate` copies through them).

An export is a stream of plain JSON-able dicts, each with a `kind`:

- `{"kind": "job", ...}`: every JobRecord field (timestamps as ISO 8601 strings in UTC,
  `dependencies` as a list, `status` as its value), plus `cancelled_by`: the upstream job
  whose bad end cancelled this one, when the adapter records it. Jobs come in `seq` order.
- `{"kind": "execution", ...}`: every Execution field, `error` as a dict
  (`type`, `message`, `traceback`) or None; after the job it belongs to, oldest first.
- `{"kind": "kv", "namespace", "key", "value"}`: the key-value store.
- `{"kind": "paused", "queue"}`: a paused queue.

Workers are not exported: they belong to the storage they ran on.

`plan_import` turns such a stream into what an adapter writes: records as they were (same
ids, seq, states, attempts, results, timestamps), with the bookkeeping that adapters keep
beside the records rebuilt from the records themselves (the count of unfinished
dependencies that keeps a job blocked, and `cancelled_by`). A job that was still running
cannot keep running on the target (its worker holds a token for the source), so it is
imported the way a rescue would leave it: its attempt counted, its execution "lost", and
pending again (or failed, with its dependents cancelled, when no attempt remains). A job
that a worker had only reserved (`reserved`, or `running` without `started_at`: see
ports.Prefetch) is imported as its rescue leaves it too: pending again, its token, worker
and lease cleared, nothing counted (not an attempt, not a hand-back, not in `lost`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

import attrs

from gigq_core.errors import UserError
from gigq_core.records import (
    WORKER_LOST,
    ErrorInfo,
    Execution,
    JobRecord,
    JobStatus,
    cascade_reason,
    check_aware,
)

#: The item kinds, in the order an export yields them.
KINDS = ("job", "execution", "kv", "paused")

_JOB_FIELDS = tuple(field.name for field in attrs.fields(JobRecord))
_JOB_TIMES = frozenset(f.name for f in attrs.fields(JobRecord) if f.validator is check_aware)
_EXECUTION_FIELDS = tuple(field.name for field in attrs.fields(Execution))
_EXECUTION_TIMES = frozenset(f.name for f in attrs.fields(Execution) if f.validator is check_aware)
# Fields an item may leave out (older exports, adapters without the bookkeeping).
_JOB_OPTIONAL = frozenset({"cancelled_by"})

#: The error text of a cascade (see `cascade_reason`): the upstream id is in parentheses.
_CASCADE = re.compile(r"^dependency '.*' \(([^()]+)\) ended \w+$", re.DOTALL)


class TransferError(UserError):
    """The items cannot be imported as given, or not into that target."""


# -- export -----------------------------------------------------------------------------------


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def job_item(job: JobRecord, cancelled_by: str | None = None) -> dict[str, Any]:
    """The export item of a job (see the module docstring)."""
    item: dict[str, Any] = {"kind": "job"}
    for name in _JOB_FIELDS:
        value = getattr(job, name)
        if name in _JOB_TIMES:
            value = _time(value)
        elif name == "dependencies":
            value = list(value)
        elif name == "status":
            value = value.value
        item[name] = value
    item["cancelled_by"] = cancelled_by
    return item


def execution_item(execution: Execution) -> dict[str, Any]:
    """The export item of an execution record."""
    item: dict[str, Any] = {"kind": "execution"}
    for name in _EXECUTION_FIELDS:
        value = getattr(execution, name)
        if name in _EXECUTION_TIMES:
            value = _time(value)
        elif name == "error":
            value = None if value is None else attrs.asdict(value)
        item[name] = value
    return item


def kv_item(namespace: str, key: str, value: str) -> dict[str, Any]:
    """The export item of one key-value entry."""
    return {"kind": "kv", "namespace": namespace, "key": key, "value": value}


def paused_item(queue: str) -> dict[str, Any]:
    """The export item of a paused queue."""
    return {"kind": "paused", "queue": queue}


def export_stream(
    jobs: Iterable[tuple[JobRecord, str | None, Iterable[Execution]]],
    kv: Iterable[tuple[str, str, str]],
    paused: Iterable[str],
) -> Iterator[dict[str, Any]]:
    """The items of an export: each job (in the order given, which must be seq order) with
    its `cancelled_by` and followed by its executions, then the key-value entries, then the
    paused queues."""
    for job, cancelled_by, executions in jobs:
        yield job_item(job, cancelled_by)
        for execution in executions:
            yield execution_item(execution)
    for namespace, key, value in kv:
        yield kv_item(namespace, key, value)
    for queue in paused:
        yield paused_item(queue)


# -- import -----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ImportedJob:
    """A job as the target stores it, with the bookkeeping adapters keep beside it."""

    record: JobRecord
    #: How many of its dependencies have not completed (missing ones count as completed:
    #: prune only removes jobs that no unfinished job needs).
    blocked: int
    #: The upstream job whose bad end cancelled it, or None.
    cancelled_by: str | None


@attrs.frozen(kw_only=True)
class ImportPlan:
    """What an adapter writes for an import, in one transaction."""

    #: In seq order.
    jobs: tuple[ImportedJob, ...]
    #: In the order given (each job's oldest first).
    executions: tuple[Execution, ...]
    kv: tuple[tuple[str, str, str], ...]
    paused: tuple[str, ...]
    #: Jobs that were running in the source and were imported as their rescue leaves them.
    lost: tuple[str, ...]

    def counts(self) -> dict[str, int]:
        """Items imported per kind, plus `lost` (running jobs imported as rescued)."""
        return {
            "job": len(self.jobs),
            "execution": len(self.executions),
            "kv": len(self.kv),
            "paused": len(self.paused),
            "lost": len(self.lost),
        }


def refuse_non_empty(url: str, jobs: int) -> None:
    """Raise the error of an import into a target that already holds jobs."""
    if jobs:
        raise TransferError(
            f"the target {url} already holds {jobs} job(s); import only into an empty queue"
        )


def plan_import(items: Iterable[Mapping[str, Any]], now: datetime) -> ImportPlan:
    """Read and check an item stream and rebuild its bookkeeping (see the module docstring).

    `now` (an aware datetime) is when running jobs are found lost. Raises TransferError
    (a UserError) with one sentence for an item that is not a valid export item, a
    duplicated job id or seq, an execution of a job not exported before it, or two active
    jobs with one unique key.
    """
    if now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    jobs: dict[str, JobRecord] = {}
    cancelled_by: dict[str, str | None] = {}
    executions: list[Execution] = []
    kv: dict[tuple[str, str], str] = {}
    paused: dict[str, None] = {}
    seqs: set[int] = set()
    for number, item in enumerate(items, 1):
        kind = item.get("kind") if isinstance(item, Mapping) else None
        where = f"item {number}"
        if kind == "job":
            job, by = _job_from_item(item, where)
            if job.id in jobs:
                raise TransferError(f"{where}: job id '{job.id}' appears twice")
            if job.seq in seqs or job.seq < 1:
                raise TransferError(f"{where}: job '{job.id}' has a duplicate or invalid seq")
            seqs.add(job.seq)
            jobs[job.id] = job
            cancelled_by[job.id] = by
        elif kind == "execution":
            execution = _execution_from_item(item, where)
            if execution.job_id not in jobs:
                raise TransferError(
                    f"{where}: execution of job '{execution.job_id}', which was not exported "
                    "before it"
                )
            executions.append(execution)
        elif kind == "kv":
            namespace, key, value = (
                _text(item, name, where) for name in ("namespace", "key", "value")
            )
            kv[(namespace, key)] = value
        elif kind == "paused":
            paused[_text(item, "queue", where)] = None
        else:
            raise TransferError(
                f"{where}: unknown kind {kind!r}; an export has kinds {', '.join(KINDS)}"
            )
    _check_unique_keys(jobs.values())
    ordered = sorted(jobs.values(), key=lambda job: job.seq)
    jobs, executions, cancelled_by, lost = _rescue_running(ordered, executions, cancelled_by, now)
    planned = tuple(
        ImportedJob(
            record=job,
            blocked=sum(
                1
                for dep in job.dependencies
                if dep in jobs and jobs[dep].status is not JobStatus.COMPLETED
            ),
            cancelled_by=_cancelled_by(job, cancelled_by.get(job.id)),
        )
        for job in sorted(jobs.values(), key=lambda job: job.seq)
    )
    return ImportPlan(
        jobs=planned,
        executions=tuple(executions),
        kv=tuple((namespace, key, value) for (namespace, key), value in kv.items()),
        paused=tuple(paused),
        lost=tuple(lost),
    )


def _cancelled_by(job: JobRecord, given: str | None) -> str | None:
    """`cancelled_by` as exported, or read from a cascade's error when the source did not
    record it; None for jobs that are not cancelled."""
    if job.status is not JobStatus.CANCELLED:
        return None
    if given is not None:
        return given
    match = _CASCADE.match(job.error or "")
    if match and match.group(1) in job.dependencies:
        return match.group(1)
    return None


def _rescue_running(
    ordered: list[JobRecord],
    executions: list[Execution],
    cancelled_by: dict[str, str | None],
    now: datetime,
) -> tuple[dict[str, JobRecord], list[Execution], dict[str, str | None], list[str]]:
    """Running and reserved jobs as a rescue at `now` leaves them (Storage.rescue),
    cascades included; returns the jobs, executions, `cancelled_by` and the ids of the
    running ones (reserved ones are not lost attempts)."""
    jobs = {job.id: job for job in ordered}
    for job in ordered:
        if _is_reserved(job):
            # Never started: pending again, nothing counted (ports.Prefetch).
            jobs[job.id] = attrs.evolve(
                job,
                status=JobStatus.PENDING,
                token=None,
                worker_id=None,
                lease_expires_at=None,
                cancel_requested=False,
                updated_at=now,
            )
    running = [job for job in ordered if job.status is JobStatus.RUNNING and not _is_reserved(job)]
    if not running:
        return jobs, executions, cancelled_by, []
    tokens = {(job.id, job.token) for job in running}
    executions = [
        attrs.evolve(e, status="lost", error=WORKER_LOST, completed_at=now)
        if (e.job_id, e.token) in tokens and e.status == "running"
        else e
        for e in executions
    ]
    dependents: dict[str, list[str]] = {}
    for job in ordered:
        for dep in job.dependencies:
            dependents.setdefault(dep, []).append(job.id)
    cancelled_by = dict(cancelled_by)
    for job in running:
        final = job.attempts >= job.max_attempts
        jobs[job.id] = attrs.evolve(
            job,
            status=JobStatus.FAILED if final else JobStatus.PENDING,
            run_at=job.run_at if final else now,
            error=WORKER_LOST.message,
            completed_at=now if final else None,
            updated_at=now,
            token=None,
            lease_expires_at=None,
            cancel_requested=False,
        )
        if final:
            frontier = [jobs[job.id]]
            while frontier:
                parent = frontier.pop(0)
                for child_id in dependents.get(parent.id, ()):
                    child = jobs[child_id]
                    if child.status is not JobStatus.PENDING:
                        continue
                    child = attrs.evolve(
                        child,
                        status=JobStatus.CANCELLED,
                        error=cascade_reason(parent.id, parent.name, parent.status.value),
                        completed_at=now,
                        updated_at=now,
                    )
                    jobs[child_id] = child
                    cancelled_by[child_id] = parent.id
                    frontier.append(child)
    return jobs, executions, cancelled_by, [job.id for job in running]


def _is_reserved(job: JobRecord) -> bool:
    """Held by a worker but not started: `reserved`, or as an SQL store keeps it, `running`
    without `started_at` (ports.Prefetch)."""
    return job.status is JobStatus.RESERVED or (
        job.status is JobStatus.RUNNING and job.started_at is None
    )


_HOLDING = (JobStatus.PENDING, JobStatus.RESERVED, JobStatus.RUNNING)


def _check_unique_keys(jobs: Iterable[JobRecord]) -> None:
    active: dict[str, str] = {}
    for job in jobs:
        if job.unique_key is None or job.status not in _HOLDING:
            continue
        other = active.setdefault(job.unique_key, job.id)
        if other != job.id:
            raise TransferError(
                f"jobs '{other}' and '{job.id}' are both active with unique key '{job.unique_key}'"
            )


def _text(item: Mapping[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        raise TransferError(f"{where} ({item.get('kind')}): '{name}' must be a string")
    return value


def _check_fields(
    item: Mapping[str, Any], fields: Iterable[str], optional: frozenset[str], where: str
) -> None:
    wanted = {"kind", *fields, *optional}
    unknown = sorted(set(item) - wanted)
    if unknown:
        raise TransferError(f"{where} ({item['kind']}): unknown field(s) {', '.join(unknown)}")
    missing = [name for name in fields if name not in item]
    if missing:
        raise TransferError(f"{where} ({item['kind']}): missing field(s) {', '.join(missing)}")


def _parse_time(value: Any, name: str, where: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise TransferError(f"{where}: '{name}' is not an ISO 8601 timestamp") from None
    if parsed.utcoffset() is None:
        raise TransferError(f"{where}: '{name}' has no time zone")
    return parsed


def _job_from_item(item: Mapping[str, Any], where: str) -> tuple[JobRecord, str | None]:
    _check_fields(item, _JOB_FIELDS, _JOB_OPTIONAL, where)
    values: dict[str, Any] = {}
    for name in _JOB_FIELDS:
        value = item[name]
        if name in _JOB_TIMES:
            value = _parse_time(value, name, where)
        elif name == "dependencies":
            if not isinstance(value, list | tuple) or not all(isinstance(d, str) for d in value):
                raise TransferError(f"{where}: 'dependencies' must be a list of job ids")
            value = tuple(value)
        elif name == "status":
            try:
                value = JobStatus(value)
            except ValueError:
                raise TransferError(f"{where}: unknown status {value!r}") from None
        values[name] = value
    try:
        job = JobRecord(**values)
    except (TypeError, ValueError) as err:
        raise TransferError(f"{where}: not a valid job ({err})") from None
    by = item.get("cancelled_by")
    if by is not None and not isinstance(by, str):
        raise TransferError(f"{where}: 'cancelled_by' must be a job id or null")
    return job, by


def _execution_from_item(item: Mapping[str, Any], where: str) -> Execution:
    _check_fields(item, _EXECUTION_FIELDS, frozenset(), where)
    values: dict[str, Any] = {}
    for name in _EXECUTION_FIELDS:
        value = item[name]
        if name in _EXECUTION_TIMES:
            value = _parse_time(value, name, where)
        elif name == "error" and value is not None:
            if not isinstance(value, Mapping) or not isinstance(value.get("type"), str):
                raise TransferError(f"{where}: 'error' must be null or a dict with a 'type'")
            value = ErrorInfo(
                type=value["type"],
                message=str(value.get("message") or ""),
                traceback=str(value.get("traceback") or ""),
            )
        values[name] = value
    try:
        return Execution(**values)
    except (TypeError, ValueError) as err:
        raise TransferError(f"{where}: not a valid execution ({err})") from None


__all__ = [
    "KINDS",
    "ImportPlan",
    "ImportedJob",
    "TransferError",
    "execution_item",
    "export_stream",
    "job_item",
    "kv_item",
    "paused_item",
    "plan_import",
    "refuse_non_empty",
]
