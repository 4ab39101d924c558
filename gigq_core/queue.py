"""`JobQueue`: submit, inspect and steer jobs."""

from __future__ import annotations

import itertools
import json
import logging
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Self

from gigq_core.clock import SystemClock
from gigq_core.errors import (
    AmbiguousIdError,
    ConfigError,
    InvalidJobError,
    JobNotFoundError,
)
from gigq_core.jobs import STRATEGY_OBJECT, Job, check_function_allowed, normalize_retry
from gigq_core.limits import check_depth, check_job, check_length, check_text, clip
from gigq_core.plugins import GigQPluginManager, Hooks, get_plugin_manager, open_storage
from gigq_core.ports import Clock, Serializer, Storage
from gigq_core.records import (
    Execution,
    JobFilter,
    JobRecord,
    JobStatus,
    Transition,
    WorkerInfo,
    WorkflowInfo,
    utc,
)
from gigq_core.retry import DEFAULT_STRATEGY, build_strategy, describe_strategy
from gigq_core.serializers import check_size, decode
from gigq_core.settings import resolve

log = logging.getLogger("gigq")


def _is_storage(target: Any) -> bool:
    return not isinstance(target, str) and hasattr(target, "claim") and hasattr(target, "insert")


#: Most entries each of a queue's caches of checked function paths and retry settings
#: keeps (they start over when full).
_CHECKED_CACHE_SIZE = 1024


def _remember(checked: set[Any], key: Any) -> None:
    """Add `key` to a cache of things already checked, starting it over when full."""
    if len(checked) >= _CHECKED_CACHE_SIZE:
        checked.clear()
    checked.add(key)


def _function_here(function: Any, path: str) -> Any:
    """The job's function when this process already has it (given as a function, or its
    module imported), to check the params against; None otherwise: submit never imports a
    module for it."""
    if callable(function):
        return function
    module_name, _, name = path.partition(":")
    module = sys.modules.get(module_name)
    found = getattr(module, name, None) if module is not None else None
    return found if callable(found) else None


#: The most rows a listing asks for (SQL LIMIT and OFFSET are 64-bit).
_MAX_ROWS = 2**63 - 1

#: How many of the ids an ambiguous prefix matches its error shows, and how many it counts
#: (a range scan of the id index, cheap at that size; past it the error says "more than").
_SHOWN_MATCHES = 5
_COUNTED_MATCHES = 1000
#: Shown ids are cut to a prefix of at least this length that no other match shares.
_SHORT_ID = 8


def _shared(a: str, b: str) -> int:
    """How many characters `a` and `b` share at their start."""
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def ambiguous(what: str, prefix: str, matches: Sequence[str], total: int | None) -> str:
    """The error for a prefix several ids start with: the first matches (`matches`, sorted,
    one more than shown when there are more), each cut to a prefix that picks it alone, and
    how many match in all (`total`; None: more than `_COUNTED_MATCHES`)."""
    shown = list(matches[:_SHOWN_MATCHES])
    # In sorted ids the longest prefix one shares with any other is shared with a neighbour,
    # and `matches` holds the next one after the last shown.
    common = max(_shared(a, b) for a, b in itertools.pairwise(matches[: len(shown) + 1]))
    length = max(_SHORT_ID, len(prefix) + 1, common + 1)
    cut = [i if len(i) <= length else i[:length] + "…" for i in shown]
    text = f"{what} prefix '{prefix}' is ambiguous: {', '.join(cut)}"
    if total is None:
        return f"{text} ({len(shown)} of more than {_COUNTED_MATCHES} shown)"
    return text if total <= len(shown) else f"{text} ({len(shown)} of {total} shown)"


class JobQueue:
    """A queue of jobs in one storage (a SQLite file by default).

    `target` is a path, a URL (`sqlite:///path?durability=normal`, `memory://name`,
    `postgresql://...`) or a storage object; None takes `$GIGQ_DB`, else `gigq.db`.
    """

    def __init__(
        self,
        target: Any = None,
        initialize: bool = True,
        *,
        plugin_manager: GigQPluginManager | None = None,
        clock: Clock | None = None,
        serializer: Serializer | str | None = None,
        **settings: Any,
    ) -> None:
        self.pm = plugin_manager or get_plugin_manager()
        self.hooks = Hooks(self.pm)
        self.clock: Clock = clock or SystemClock()
        declared = self.hooks.settings()  # the settings plugins read, a storage's own
        if _is_storage(target):
            url = getattr(target, "url", "storage")
            _, self.settings = resolve(url, settings, declared=declared)
            self.storage: Storage = target
        else:
            if target is not None and not isinstance(target, str):
                target = str(target)  # a pathlib.Path
            if not initialize:
                settings.setdefault("create", False)
            base, self.settings = resolve(target, settings, declared=declared)
            self.storage = open_storage(base, self.settings.as_dict(), self.pm)
        self.target = self.storage.url
        if serializer is None or isinstance(serializer, str):
            name = serializer or self.settings.serializer
            serializer = self.hooks.serializers().get(name)
            if serializer is None:
                raise ConfigError(f"unknown serializer '{name}'")
        self.serializer = serializer
        self._strategies = self.hooks.retry_strategies()
        # What _record has checked once and need not check again: function paths the
        # policy allows, and (strategy, parameters) pairs that build.
        self._allowed: set[str] = set()
        self._valid_retries: set[tuple[str, str]] = set()

    # -- submitting --------------------------------------------------------------------------

    def submit(self, job: Job) -> str:
        """Store a job; returns its id (the existing job's id when deduplicated by key)."""
        return self.submit_many([job])[0]

    def submit_many(self, jobs: Iterable[Job]) -> list[str]:
        """Store jobs in one transaction (all or nothing); returns their ids in order."""
        jobs = list(jobs)
        if not jobs:
            return []
        now = self.clock.now()
        records = [self._record(job, now) for job in jobs]
        ids = self.storage.insert(records, now)
        stored = [r for r, i in zip(records, ids, strict=True) if r.id == i]
        if stored and self.hooks.wanted("submitted"):
            self._fire_submitted(stored)
        for job, job_id in zip(jobs, ids, strict=True):
            if job_id != job.id:
                log.debug("job %r deduplicated into %s (unique key)", job.name, job_id)
        return ids

    def _fire_submitted(self, stored: list[JobRecord]) -> None:
        """`gigq_job_submitted` for each stored job, in submit order.

        A job without dependencies is stored exactly as built (pending, no error), so its
        record is passed on without a second read; one with dependencies is read back, as
        the storage decides whether it starts cancelled (a dependency already ended badly).
        Nothing at all when no plugin listens (a batch of a million jobs skips a million
        empty hook calls).
        """
        if not self.hooks.wanted("submitted"):
            return
        linked = [r.id for r in stored if r.dependencies]
        found = self.storage.get_many(linked) if linked else {}
        for built in stored:
            record = found.get(built.id) if built.dependencies else built
            if record is not None:
                self.hooks.job_submitted(record)

    def _record(self, job: Job, now: datetime) -> JobRecord:
        """Validate a Job against this queue (serializer, policy, strategy) and freeze it."""
        if not isinstance(job, Job):
            raise InvalidJobError(f"submit takes Job objects, got {type(job).__name__}")
        check_job(job, self.settings)
        path = job.function_path
        module = path.partition(":")[0]
        if module == "__main__":
            log.warning(
                "job %r: function %r is defined in a script (__main__); only this program "
                "(the inline executor, or workers forked from it) can run it",
                job.name,
                path,
            )
        if path not in self._allowed:
            check_function_allowed(path, self.settings.allowed_modules)
            _remember(self._allowed, path)
        check_depth(job.params, self.settings.max_nesting_depth, f"the params of job '{job.name}'")
        params = self.serializer.dumps(job.params)
        check_size(params, self.settings.max_payload, f"the serialized params of job '{job.name}'")
        name, options = normalize_retry(job.retry, job.retry_delay)
        if name == STRATEGY_OBJECT:
            name, options = describe_strategy(self._strategies, options["object"])
        name = name or DEFAULT_STRATEGY
        retry_params = "{}"
        if options:
            try:
                retry_params = json.dumps(options, sort_keys=True, allow_nan=False)
            except (TypeError, ValueError) as err:
                raise InvalidJobError(
                    f"the parameters of retry strategy '{name}' of job '{job.name}' must be "
                    f"plain JSON values: {err}"
                ) from None
        if (name, retry_params) not in self._valid_retries:
            build_strategy(self._strategies, name, options)
            _remember(self._valid_retries, (name, retry_params))
        record = JobRecord(
            id=job.id,
            name=job.name,
            function=path,
            params=params,
            queue=job.queue,
            priority=job.priority,
            max_attempts=job.max_attempts,
            timeout=job.timeout,
            retry=name,
            retry_params=retry_params,
            description=job.description,
            dependencies=tuple(dict.fromkeys(job.dependencies)),
            pass_parent_results=job.pass_parent_results,
            unique_key=job.unique_key,
            unique_scope=job.unique_scope,
            workflow_id=job.workflow_id,
            workflow_name=job.workflow_name,
            run_at=job.due_at(now),
            created_at=now,
            updated_at=now,
        )
        function = _function_here(job.function, path)
        if function is not None:
            from gigq_core.execution import check_params_fit  # (not on `import gigq`'s path)

            check_params_fit(function, job.params, record)
        return record

    # -- steering ----------------------------------------------------------------------------

    def cancel(self, job_id: str) -> bool:
        """Cancel a pending job (or ask a running one to stop); False if finished or unknown."""
        return bool(self.cancel_many([job_id]))

    def cancel_many(self, job_ids: Sequence[str], reason: str = "cancelled by user") -> list[str]:
        """Cancel jobs in one transaction; returns the ids that changed, the dependents the
        cancels cascaded to included."""
        _check_ids(job_ids)
        reason = clip(reason, self.settings.max_error_length)
        transitions = self.storage.cancel(list(job_ids), self.clock.now(), reason)
        self._fire_cancelled(transitions)
        changed = [t.job.id for t in transitions]
        changed += [c.id for t in transitions for c in t.cancelled if c.id not in changed]
        return changed

    def _fire_cancelled(self, transitions: Sequence[Transition]) -> None:
        for transition in transitions:
            if transition.job.status is JobStatus.CANCELLED:
                self.hooks.job_cancelled(transition.job, transition.job.error or "cancelled")
            for child in transition.cancelled:
                self.hooks.job_cancelled(child, child.error or "cancelled")

    def requeue_job(self, job_id: str) -> bool:
        """Put a failed, timed-out or cancelled job back to pending; False otherwise."""
        return bool(self.requeue_many([job_id]))

    def requeue_many(self, job_ids: Sequence[str]) -> list[str]:
        """Requeue jobs in one transaction; returns the ids that changed."""
        _check_ids(job_ids)
        return [t.job.id for t in self.storage.requeue(list(job_ids), self.clock.now())]

    def pause_queue(self, queue: str) -> None:
        """Stop workers from claiming jobs of `queue` (its jobs are kept)."""
        check_length(queue, self.settings.max_name_length, "the queue name", "max_name_length")
        self.storage.set_queue_paused(queue, True)

    def resume_queue(self, queue: str) -> None:
        """Let workers claim jobs of `queue` again."""
        check_text(queue, "the queue name")
        self.storage.set_queue_paused(queue, False)

    def clear(
        self, statuses: Sequence[str] = ("completed",), before: float | datetime | None = None
    ) -> int:
        """Delete finished jobs in `statuses` (and their executions) last updated before
        `before` (a Unix time or datetime; default now). Never a job a live job depends on.
        Returns how many were deleted."""
        for status in statuses:
            if not JobStatus(status).is_final:
                raise InvalidJobError(f"only finished jobs can be cleared, not '{status}'")
        if before is None:
            cutoff = self.clock.now()
        elif isinstance(before, datetime):
            cutoff = utc(before)
        else:
            cutoff = datetime.fromtimestamp(float(before), UTC)
        return self.storage.prune(cutoff, list(statuses))

    # -- reading -----------------------------------------------------------------------------

    def resolve_id(self, prefix: str) -> str:
        """The full id of the one job whose id starts with `prefix`."""
        check_text(prefix, "the job id")
        if self.storage.get(prefix) is not None:
            return prefix
        found = self.storage.find_ids(prefix, limit=_COUNTED_MATCHES + 1) if prefix else []
        if not found:
            raise JobNotFoundError(f"no job with id '{prefix}'")
        if len(found) > 1:
            total = len(found) if len(found) <= _COUNTED_MATCHES else None
            raise AmbiguousIdError(ambiguous("id", prefix, found, total))
        return found[0]

    def get_job(self, job_id: str) -> JobRecord:
        """The stored record of a job; JobNotFoundError for an unknown id."""
        check_text(job_id, "the job id")
        record = self.storage.get(job_id)
        if record is None:
            raise JobNotFoundError(f"no job with id '{job_id}'")
        return record

    def executions(self, job_id: str) -> list[Execution]:
        """The attempts at running a job, oldest first; [] for an unknown id."""
        check_text(job_id, "the job id")
        return self.storage.executions(job_id)

    def get_result(self, job_id: str, timeout: float | None = None) -> Any:
        """The job's return value; None while unfinished (or waits up to `timeout` seconds).

        KeyError (JobNotFoundError) for an unknown id.
        """
        record = self.get_job(job_id)
        if timeout is not None and not record.status.is_final:
            self.wait([job_id], timeout=timeout)
            record = self.get_job(job_id)
        if record.status is JobStatus.COMPLETED:
            return decode(self.serializer, record.result, record.id, "result")
        return None

    def wait(self, job_ids: Sequence[str], timeout: float | None = None) -> dict[str, str]:
        """Block until every job is finished or `timeout` seconds pass; returns id -> status.

        Unknown ids raise JobNotFoundError.
        """
        ids = [job_ids] if isinstance(job_ids, str) else list(job_ids)  # one id, or many
        _check_ids(ids)
        deadline = None if timeout is None else self.clock.monotonic() + timeout
        while True:
            records = self.storage.get_many(ids)
            for job_id in ids:
                if job_id not in records:
                    raise JobNotFoundError(f"no job with id '{job_id}'")
            statuses = {i: records[i].status.value for i in ids}
            if all(records[i].status.is_final for i in ids):
                return statuses
            left = None if deadline is None else deadline - self.clock.monotonic()
            if left is not None and left <= 0:
                return statuses
            self.storage.wait_for_work(min(0.5, left) if left is not None else 0.5)

    def jobs(
        self,
        status: str | Sequence[str] | None = None,
        limit: int = 100,
        *,
        queue: str | Sequence[str] | None = None,
        name: str | None = None,
        workflow_id: str | None = None,
        offset: int = 0,
        order: str = "newest",
    ) -> list[JobRecord]:
        """The jobs a filter picks, newest first unless `order` says otherwise ("oldest",
        "priority"); a row that cannot be read comes as an `UnreadableJob` stand-in."""
        where = make_filter(status=status, queue=queue, name=name, workflow_id=workflow_id)
        # Past 64 bits a database cannot take them; no store holds that many jobs anyway.
        limit, offset = min(limit, _MAX_ROWS), min(offset, _MAX_ROWS)
        return self.storage.list_jobs(where, limit=limit, offset=offset, order=order)

    def stats(self) -> dict[str, int]:
        """A count per status, plus `total`."""
        counts = self.storage.count(JobFilter())
        result = {status.value: counts.get(status.value, 0) for status in JobStatus}
        result["total"] = sum(result.values())
        return result

    def workflows(self, limit: int = 100) -> list[WorkflowInfo]:
        """Submitted workflows with their job counts per status, newest first."""
        return self.storage.list_workflows(limit)

    def resolve_workflow(self, name_or_id: str) -> WorkflowInfo:
        """The workflow with that id (or unique id prefix), or the only one with that name.

        A name used by several workflows is an AmbiguousIdError listing their ids.
        """
        flows = self.storage.list_workflows(limit=1_000_000)
        exact = [f for f in flows if f.id == name_or_id]
        if exact:
            return exact[0]
        named = [f for f in flows if f.name == name_or_id]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            ids = ", ".join(f.id for f in named)
            raise AmbiguousIdError(
                f"{len(named)} workflows are named '{name_or_id}'; name one by id: {ids}"
            )
        prefixed = [f for f in flows if name_or_id and f.id.startswith(name_or_id)]
        if len(prefixed) == 1:
            return prefixed[0]
        if len(prefixed) > 1:
            matches = sorted(f.id for f in prefixed)
            raise AmbiguousIdError(ambiguous("workflow id", name_or_id, matches, len(matches)))
        raise JobNotFoundError(f"no workflow with name or id '{name_or_id}'")

    def workflow_jobs(self, workflow_id: str) -> list[JobRecord]:
        """The jobs of a workflow, in submit order."""
        return self.storage.list_jobs(
            JobFilter(workflow_id=workflow_id), limit=1_000_000, order="oldest"
        )

    def cancel_workflow(self, workflow_id: str, reason: str = "workflow cancelled") -> list[str]:
        """Cancel every unfinished job of a workflow in one transaction; returns their ids."""
        ids = [j.id for j in self.workflow_jobs(workflow_id) if not j.status.is_final]
        return self.cancel_many(ids, reason) if ids else []

    def workers(self, since: datetime | None = None) -> list[WorkerInfo]:
        """Registered workers (and those stopped after `since`) with their current jobs."""
        return self.storage.list_workers(since)

    def close(self) -> None:
        """Close the storage."""
        self.storage.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<JobQueue {self.target}>"


def _check_ids(job_ids: Iterable[str]) -> None:
    """Refuse an id no store can hold (`check_text`) before a storage is asked about it."""
    for job_id in job_ids:
        check_text(job_id, "the job id")


def make_filter(
    status: str | Sequence[str] | None = None,
    queue: str | Sequence[str] | None = None,
    name: str | None = None,
    workflow_id: str | None = None,
) -> JobFilter:
    """A JobFilter from user values; an unknown status, or text no store can hold (a lone
    surrogate), is an InvalidJobError."""
    check_text(name, "the name to filter by")
    check_text(workflow_id, "the workflow id to filter by")
    statuses = None
    if status is not None:
        values = [status] if isinstance(status, str) else list(status)
        try:
            statuses = tuple(JobStatus(v) for v in values)
        except ValueError:
            known = ", ".join(s.value for s in JobStatus)
            raise InvalidJobError(f"unknown status in {values!r} (known: {known})") from None
    queues = None
    if queue is not None:
        queues = (queue,) if isinstance(queue, str) else tuple(queue)
        for item in queues:
            check_text(item, "the queue name to filter by")
    return JobFilter(statuses=statuses, queues=queues, name=name, workflow_id=workflow_id)


__all__ = ["JobQueue", "make_filter"]
