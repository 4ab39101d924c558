"""`Worker`: claims jobs, runs them, reports their outcomes, heartbeats and rescues.

Two executors:
- "process" (the default for `start()`): a supervisor (this process) and a pool of
  long-lived children (`gigq_core.pool`); only the supervisor touches storage, and a hung or
  crashing job is killed with its whole process group without taking the worker down.
- "inline": jobs run in this process (threads when `concurrency > 1`), for tests and
  embedding. Timeouts and cancellation are cooperative there (`current_job().is_cancelled()`);
  an attempt that overran is recorded as `timeout` when it returns. `process_one()` always
  runs inline.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import select
import signal
import socket
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import attrs

from gigq_core.context import JobContext
from gigq_core.errors import (
    ConfigError,
    CorruptDatabaseError,
    GigQError,
    NotADatabaseError,
    PermissionDeniedError,
    ReadOnlyError,
    SchemaVersionError,
    StorageError,
)
from gigq_core.execution import (
    AttemptResult,
    PermanentError,
    decide,
    load_function,
    may_want_parent_results,
    run_attempt,
    wants_parent_results,
)
from gigq_core.limits import check_length, clip_error
from gigq_core.plugins import GigQPluginManager, open_storage
from gigq_core.pool import ProcessPool
from gigq_core.ports import (
    Clock,
    DeferredFinish,
    IndependentHandles,
    PermissionChecked,
    Serializer,
    Storage,
)
from gigq_core.queue import JobQueue
from gigq_core.records import ErrorInfo, JobRecord, JobStatus, Outcome, Transition, WorkerInfo
from gigq_core.settings import EXECUTORS, override

log = logging.getLogger("gigq")


#: What the `retention` setting removes; failed and timed-out jobs stay for inspection.
RETAINED_STATUSES = ("completed", "cancelled")
#: Seconds between retention clean-ups of one worker.
_PRUNE_INTERVAL = 60.0
#: Most outcomes one flush holds (the SIGKILL chaos test of docs/guarantees.md counts them
#: as extra executions a kill may cause).
FLUSH_MAX_JOBS = 32

_Report = tuple[JobRecord, AttemptResult, Outcome, float | None]
#: A report and its committed transition (None: fenced), waiting for the disk.
_Committed = tuple[JobRecord, AttemptResult, Outcome, float | None, Transition | None]


class _Running:
    """A job this worker holds."""

    def __init__(self, record: JobRecord, context: JobContext, started: float) -> None:
        self.record = record
        self.context = context
        self.started = started
        #: Why the job was asked to stop: "timeout", "cancelled", "lost" or None.
        self.stop_reason: str | None = None


class Worker:
    """A worker over one queue: `start()` runs until `stop()` or SIGTERM/SIGINT."""

    #: The class of the queue a worker opens when given a target rather than a JobQueue.
    queue_class: type[JobQueue] = JobQueue

    def __init__(
        self,
        target: Any = None,
        worker_id: str | None = None,
        polling_interval: float | None = None,
        concurrency: int | None = None,
        queues: Sequence[str] | str | None = None,
        lease: float | None = None,
        heartbeat: float | None = None,
        grace: float | None = None,
        executor: str | None = None,
        *,
        queue_concurrency: dict[str, int] | None = None,
        plugin_manager: GigQPluginManager | None = None,
        clock: Clock | None = None,
        serializer: Serializer | None = None,
        **settings: Any,
    ) -> None:
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise ValueError(f"concurrency must be an integer of at least 1, got {concurrency!r}")
        overrides = {
            "polling_interval": polling_interval,
            "concurrency": concurrency,
            "lease": lease,
            "heartbeat": heartbeat,
            "grace": grace,
            "executor": executor,
            **settings,
        }
        #: Whether close() closes the queue (not when the caller passed its own JobQueue).
        self._owns_queue = not isinstance(target, JobQueue)
        if isinstance(target, JobQueue):
            self.queue = target
        else:
            self.queue = self.queue_class(
                target,
                plugin_manager=plugin_manager,
                clock=clock,
                serializer=serializer,
                **overrides,
            )
        #: The settings plugins declare (a storage's own), checked with the worker's overrides.
        self._declared = self.queue.hooks.settings()
        self.settings = override(self.queue.settings, overrides, self._declared)
        self.storage = self.queue.storage
        #: Heartbeats go through their own connection where the storage has connections,
        #: so a renewal never queues behind this process's own slow write.
        self.heartbeat_storage = self.storage
        self.watch_storage = self.storage
        self.hooks = self.queue.hooks
        self.clock = self.queue.clock
        self.serializer = self.queue.serializer
        self.concurrency = int(self.settings.concurrency)
        self.executor = str(self.settings.executor)
        self.polling_interval = float(self.settings.polling_interval)
        self.lease = float(self.settings.lease)
        self.heartbeat_interval = float(self.settings.heartbeat)
        self.sweep_interval = float(self.settings.sweep_interval)
        self.grace = float(self.settings.grace)
        self.flush_interval = float(self.settings.flush_interval)
        if isinstance(queues, str):
            queues = [queues]
        self.queues: tuple[str, ...] | None = tuple(queues) if queues else None
        limits = dict(queue_concurrency or {})
        for name, cap in limits.items():
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
                raise ValueError(f"queue_concurrency[{name!r}] must be an integer of at least 1")
            if self.queues is not None and name not in self.queues:
                raise ValueError(f"queue_concurrency names queue {name!r}, which is not served")
        #: Most jobs of one queue running at once in this worker.
        self.queue_limits: dict[str, int] = limits
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        check_length(
            self.worker_id, self.settings.max_name_length, "the worker id", "max_name_length"
        )
        self._check_permissions()
        self._stop = threading.Event()
        #: Set while the loop could start another job now (a free child or thread).
        self._idle = threading.Event()
        self._lock = threading.Lock()
        #: The attempts this worker holds, by token (one job may be held twice for a moment:
        #: a rescued attempt still running here and its new attempt).
        self._running: dict[str, _Running] = {}
        #: Outcomes decided but not yet committed (group commit), and when they are due.
        self._unflushed: list[_Report] = []
        self._flush_at = 0.0
        #: Waits for the disk off the loop (process executor, storage that can defer it).
        self._syncer: _Syncer | None = None
        self._pool: ProcessPool | None = None
        self._last_sweep = float("-inf")
        self._last_prune = float("-inf")
        self._burst = False
        #: Whether start()'s inline loop runs (its job threads leave outcomes to it).
        self._looping = False
        #: Storage failures in a row (for the back-off).
        self._trouble = 0
        self._last_tick = float("-inf")
        self._signals = 0
        self._wake_r, self._wake_w = -1, -1
        self._beat_thread: _Heartbeat | None = None

    def _check_permissions(self) -> None:
        """Refuse a database others may write (docs/guarantees.md D9), unless allowed."""
        if (
            isinstance(self.storage, PermissionChecked)
            and not self.settings.allow_insecure_permissions
        ):
            message = self.storage.permission_problem()
            if message:
                raise ConfigError(f"refusing to run jobs: {message}")

    # -- claiming and reporting (both executors) -----------------------------------------

    def _claim(self, limit: int) -> list[JobRecord]:
        """Claim up to `limit` jobs, within the per-queue limits."""
        if limit <= 0:
            return []
        try:
            claimed = self._claim_from_storage(limit)
        except StorageError as err:
            self._storage_trouble(err)
            return []
        self._trouble = 0
        self._started(claimed)
        return claimed

    def _claim_from_storage(self, limit: int) -> list[JobRecord]:
        now = self.clock.now()
        claimed: list[JobRecord] = []
        if self.queue_limits:
            with self._lock:
                busy: dict[str, int] = {}
                for running in self._running.values():
                    busy[running.record.queue] = busy.get(running.record.queue, 0) + 1
            for name, cap in self.queue_limits.items():
                room = min(limit - len(claimed), cap - busy.get(name, 0))
                if room > 0:
                    claimed += self.storage.claim(self.worker_id, room, now, self.lease, [name])
            others = self._unlimited_queues()
            if others != () and len(claimed) < limit:
                claimed += self.storage.claim(
                    self.worker_id, limit - len(claimed), now, self.lease, others
                )
        else:
            claimed = self.storage.claim(self.worker_id, limit, now, self.lease, self.queues)
        return claimed

    def _storage_trouble(self, err: StorageError) -> None:
        """Back off after a storage failure (an outage, a lock held past the deadline);
        a database that cannot be used at all ends the worker."""
        if isinstance(
            err,
            NotADatabaseError
            | CorruptDatabaseError
            | SchemaVersionError
            | ReadOnlyError
            | PermissionDeniedError,
        ):
            raise err  # waiting cannot mend these
        self._trouble += 1
        pause = min(30.0, 0.5 * 2 ** min(self._trouble - 1, 6))
        log.warning(
            "worker %s: storage failed (%s); trying again in %g s", self.worker_id, err, pause
        )
        self._stop.wait(pause)

    def _started(self, claimed: Sequence[JobRecord]) -> None:
        """Hold newly claimed jobs and fire their start hooks."""
        for record in claimed:
            context = JobContext(
                id=record.id,
                name=record.name,
                attempt=record.attempts,
                worker_id=self.worker_id,
                beat=self._beat_now,
            )
            assert record.token is not None
            with self._lock:
                for older in self._running.values():
                    if older.record.id == record.id and older.stop_reason is None:
                        # Claimed again: the older attempt was rescued from under us.
                        older.stop_reason = "lost"
                        older.context._stop.set()
                self._running[record.token] = _Running(record, context, self.clock.monotonic())
            log.debug("start job %s (%r) attempt %d", record.id, record.name, record.attempts)
            self.hooks.job_started(record, record.attempts, self.worker_id)

    def _unlimited_queues(self) -> tuple[str, ...] | None:
        """The served queues without a per-queue limit; None: any queue not limited."""
        if self.queues is None:
            # Every queue but the limited ones: name them by what the storage holds.
            names = set(self.storage.queue_counts()) - set(self.queue_limits)
            return tuple(sorted(names))
        return tuple(q for q in self.queues if q not in self.queue_limits)

    def _prepare(self, record: JobRecord) -> dict[str, Any]:
        """The keyword arguments of the call: params, plus parent_results when wanted."""
        params: dict[str, Any] = self.serializer.loads(record.params)
        if may_want_parent_results(record):
            wanted: bool | None = record.pass_parent_results
            if wanted is None:
                try:
                    function = load_function(record, self.settings.allowed_modules)
                except PermanentError:
                    return params  # the attempt itself will fail with the reason
                wanted = wants_parent_results(function, record)
            if wanted:
                params["parent_results"] = self._parent_results(record)
        return params

    def _parent_results(self, record: JobRecord) -> dict[str, Any]:
        """The decoded results of the job's dependencies, by id; PermanentError, with none
        of them loaded, when together they are larger than `max_parent_results`."""
        cap = self.settings.max_parent_results
        total, found = self.storage.results(record.dependencies, cap)
        if total > cap:
            raise PermanentError(
                f"the results of the {len(record.dependencies):,} dependencies of job "
                f"{record.id} are {total:,} bytes together, over the limit of {cap:,} "
                "(setting max_parent_results): have the parents return references, such as "
                "paths, instead"
            )
        return {
            dep: None if (data := found.get(dep)) is None else self.serializer.loads(data)
            for dep in record.dependencies
        }

    def _finish(self, record: JobRecord, attempt: AttemptResult) -> None:
        """Report one attempt's end now (fenced by its token), with whatever outcomes wait
        in the buffer; then log it and fire its hooks."""
        self._buffer([(record, attempt)])
        self._flush()

    def _buffer(self, ended: Sequence[tuple[JobRecord, AttemptResult]]) -> None:
        """Decide the outcomes of ended attempts and hold them for the next flush.

        Group commit (docs/guarantees.md): one durable commit records every outcome held, at the
        latest `flush_interval` seconds after the first; hooks fire only after it. Until then
        the jobs stay `running` under their leases (the heartbeat renews them), so a crash
        in between makes them run again, never lost.
        """
        reports = [report for r, a in ended if (report := self._outcome(r, a)) is not None]
        if not reports:
            return
        with self._lock:
            if not self._unflushed:
                self._flush_at = self.clock.monotonic() + self.flush_interval
            self._unflushed.extend(reports)

    def _flush_due(self) -> bool:
        """Whether the held outcomes should be committed now."""
        return bool(self._unflushed) and (
            len(self._unflushed) >= FLUSH_MAX_JOBS or self.clock.monotonic() >= self._flush_at
        )

    def _flush(self) -> None:
        """Commit every held outcome in one transaction; log and fire hooks once it is
        durable.

        With a syncer running (the process loop, on storage that offers
        `finish_deferred` and `sync`), the commit releases the write lock before the disk
        has the rows and the syncer thread waits for the disk; the loop fires the hooks
        when it reports back (`_fire_durable`). Otherwise the commit itself is durable.
        """
        with self._lock:
            reports, self._unflushed = self._unflushed, []
        if not reports:
            return
        outcomes = [outcome for _, _, outcome, _ in reports]
        syncer = self._syncer
        try:
            if syncer is not None:
                transitions = syncer.storage.finish_deferred(outcomes, self.clock.now())
            else:
                transitions = self.storage.finish(outcomes, self.clock.now())
        except GigQError:
            log.exception(
                "could not record the outcome of job(s) %s; they will be rescued when their "
                "lease expires",
                ", ".join(o.job_id for o in outcomes),
            )
            return
        done = [(*report, t) for report, t in zip(reports, transitions, strict=True)]
        if syncer is not None and syncer.submit(done):
            return
        if syncer is not None:
            # The syncer stopped meanwhile (shutdown, an inline job ending late): wait for
            # the disk here, then fire the hooks.
            try:
                syncer.storage.sync()
            except GigQError:
                log.exception("worker %s: waiting for the disk failed", self.worker_id)
        self._report_committed(done)

    def _fire_durable(self) -> None:
        """Log and fire the hooks of outcomes the syncer found durable."""
        if self._syncer is not None:
            self._report_committed(self._syncer.take())

    def _report_committed(self, committed: Sequence[_Committed]) -> None:
        for record, attempt, outcome, delay, transition in committed:
            self._reported(record, attempt, outcome, delay, transition)

    def _outcome(
        self, record: JobRecord, attempt: AttemptResult
    ) -> tuple[JobRecord, AttemptResult, Outcome, float | None] | None:
        """The outcome to report for an attempt, or None when the job was taken away."""
        with self._lock:
            running = self._running.pop(record.token or "", None)
        reason = running.stop_reason if running else None
        if running is not None and not attempt.duration:
            attempt = attrs.evolve(attempt, duration=self.clock.monotonic() - running.started)
        if reason == "lost":
            log.warning(
                "job %s (%r) attempt %d was taken from this worker; its result is dropped",
                record.id,
                record.name,
                record.attempts,
            )
            return None
        if reason == "timeout":
            attempt = AttemptResult(
                status="timeout",
                error=ErrorInfo(type="Timeout", message=f"timed out after {record.timeout:g} s"),
                duration=attempt.duration,
            )
        elif reason == "cancelled":
            attempt = AttemptResult(
                status="cancelled",
                error=ErrorInfo(
                    type="Cancelled", message=record.error or "cancelled while running"
                ),
                duration=attempt.duration,
            )
        if attempt.error is not None:  # however large the error, what is stored is capped
            attempt = attrs.evolve(
                attempt, error=clip_error(attempt.error, self.settings.max_error_length)
            )
        outcome, delay = decide(record, attempt, self.clock.now(), self.queue._strategies)
        return record, attempt, outcome, delay

    def _reported(
        self,
        record: JobRecord,
        attempt: AttemptResult,
        outcome: Outcome,
        delay: float | None,
        transition: Transition | None,
    ) -> None:
        """Log a committed (or fenced) outcome and fire its hooks."""
        if transition is None:
            log.warning(
                "job %s (%r) attempt %d: outcome %s ignored, the attempt no longer holds the "
                "job (rescued, timed out or cancelled elsewhere)",
                record.id,
                record.name,
                record.attempts,
                outcome.status,
            )
            return
        log.info(
            "job %s (%r) attempt %d %s in %.3f s",
            record.id,
            record.name,
            record.attempts,
            transition.job.status.value if outcome.status == "completed" else outcome.status,
            attempt.duration,
        )
        self._fire(transition, attempt, delay)

    def _fire(self, transition: Transition, attempt: AttemptResult, delay: float | None) -> None:
        job = transition.job
        error = transition.error or attempt.error
        if job.status is JobStatus.COMPLETED:
            value = attempt.value
            if value is None and attempt.result is not None and self.hooks.wanted("succeeded"):
                value = self.serializer.loads(attempt.result)
            self.hooks.job_succeeded(job, value, attempt.duration)
        elif attempt.status == "timeout":
            self.hooks.job_timed_out(job, final=job.status is JobStatus.TIMEOUT)
            if delay is not None and error is not None:
                self.hooks.job_retrying(job, error, delay)
        elif attempt.status == "failed" and error is not None:
            self.hooks.job_failed(job, error, final=job.status is JobStatus.FAILED)
            if delay is not None:
                self.hooks.job_retrying(job, error, delay)
        elif job.status is JobStatus.CANCELLED:
            self.hooks.job_cancelled(job, job.error or "cancelled")
        self._fire_cascade(transition)

    def _fire_cascade(self, transition: Transition) -> None:
        for child in transition.cancelled:
            self.hooks.job_cancelled(child, child.error or "cancelled")

    def _hand_back(self) -> None:
        """Return every job still held to pending (graceful shutdown, D4)."""
        with self._lock:
            left = [r.record for r in self._running.values()]
            self._running.clear()
        outcomes = [
            Outcome(job_id=r.id, token=r.token, status="handed_back")
            for r in left
            if r.token is not None
        ]
        if outcomes:
            transitions = self.storage.finish(outcomes, self.clock.now())
            log.info(
                "worker %s handed back %d job(s): %s",
                self.worker_id,
                len(outcomes),
                ", ".join(o.job_id for o in outcomes),
            )
            for transition in transitions:
                if transition is None or transition.job.status is not JobStatus.FAILED:
                    continue
                # A counted hand-back took the job's last attempt (docs/guarantees.md D4).
                job = transition.job
                log.warning("job %s (%r) failed for good: %r", job.id, job.name, job.error)
                error = ErrorInfo(type="HandedBack", message=job.error or "handed back")
                self.hooks.job_failed(job, error, final=True)
                self._fire_cascade(transition)

    # -- inline execution ------------------------------------------------------------------

    def process_one(self) -> bool:
        """Claim at most one ready job and run it in this thread; True if one was claimed."""
        self._maybe_sweep()
        claimed = self._claim(1)
        if not claimed:
            return False
        if self._beat_thread is None or not self._beat_thread.is_alive():
            # One heartbeat thread for all process_one() calls; close() stops it.
            self._beat_thread = _Heartbeat(self)
            self._beat_thread.start()
        self._run_inline(claimed[0])
        return True

    def _run_inline(self, record: JobRecord) -> None:
        running = self._running[record.token or ""]
        try:
            params = self._prepare(record)
            function = load_function(record, self.settings.allowed_modules)
        except PermanentError as err:
            attempt = AttemptResult(
                status="failed",
                error=ErrorInfo(type="PermanentError", message=str(err)),
                permanent=True,
            )
        except Exception as err:  # undecodable params: the job can never run
            attempt = AttemptResult(
                status="failed", error=ErrorInfo.from_exception(err), permanent=True
            )
        else:
            try:
                attempt = run_attempt(
                    function,
                    params,
                    running.context,
                    self.serializer,
                    self.settings.max_payload,
                )
            except KeyboardInterrupt:
                self._hand_back()
                raise
        self._buffer([(record, attempt)])
        # Under start(), the loop commits it with whatever else ended meanwhile (group
        # commit) and fires its hooks; the pool's done-callback wakes it. Otherwise (or
        # once the loop has ended: it flushes after clearing the flag, so every outcome
        # buffered before this check is its to commit) this thread commits it now.
        if not self._looping:
            self._flush()

    def _run_guarded(self, record: JobRecord) -> None:
        try:
            self._run_inline(record)
        except Exception:  # a bug in reporting must not kill the pool thread silently
            log.exception("worker failed while running job %s", record.id)

    # -- heartbeat, timeouts, rescue, tick -------------------------------------------------

    def _beat_now(self) -> None:
        with self._lock:
            # The newest attempt of each job is the one that may still hold it.
            held = {r.record.id: token for token, r in self._running.items()}
            # Ended attempts waiting for the flush still hold their jobs until it commits.
            for record, _, _, _ in self._unflushed:
                held.setdefault(record.id, record.token or "")
        if not held and self._wake_r < 0:
            return  # process_one() between jobs: no lease to renew, no registered worker
        reply = self.heartbeat_storage.heartbeat(self.worker_id, held, self.clock.now(), self.lease)
        marks = [(held[i], "lost") for i in reply.lost] + [
            (held[i], "cancelled") for i in reply.cancel_requested
        ]
        with self._lock:
            for token, reason in marks:
                running = self._running.get(token)
                if running is not None and running.stop_reason is None:
                    running.stop_reason = reason
                    running.context._stop.set()
        if marks:
            self._wake()

    def _check_timeouts(self) -> list[str]:
        """Mark attempts past their timeout; returns their tokens."""
        mono = self.clock.monotonic()
        expired = []
        with self._lock:
            for token, running in self._running.items():
                timeout = running.record.timeout
                if (
                    timeout is not None
                    and running.stop_reason is None
                    and (mono - running.started > timeout)
                ):
                    running.stop_reason = "timeout"
                    running.context._stop.set()
                    expired.append(token)
        return expired

    def _maybe_sweep(self) -> None:
        mono = self.clock.monotonic()
        if mono - self._last_sweep >= self.sweep_interval:
            self._last_sweep = mono
            self.rescue()
        retention = float(self.settings.retention)
        if retention > 0 and mono - self._last_prune >= _PRUNE_INTERVAL:
            self._last_prune = mono
            cutoff = self.clock.now() - timedelta(seconds=retention)
            try:
                removed = self.queue.clear(RETAINED_STATUSES, cutoff)
            except GigQError:
                log.exception("retention clean-up of worker %s failed", self.worker_id)
            else:
                if removed:
                    log.info(
                        "retention: removed %d finished job(s) older than %g s", removed, retention
                    )

    def _maybe_tick(self) -> None:
        mono = self.clock.monotonic()
        if mono - self._last_tick >= 1.0:
            self._last_tick = mono
            self.hooks.worker_tick(self.worker_id, self.clock.now(), self.queue)

    def _dead_neighbours(self) -> list[str]:
        """Registered workers of this host whose process is gone (rescued at once, D3)."""
        host = socket.gethostname()
        dead = []
        for info in self.storage.list_workers():
            if info.host != host or info.id == self.worker_id or info.pid == os.getpid():
                continue
            try:
                os.kill(info.pid, 0)
            except ProcessLookupError:
                dead.append(info.id)
            except PermissionError:
                pass  # alive, another user's
        return dead

    def _second_storage(self) -> Storage:
        """Another handle on the same storage (its own connection) where the adapter says
        that opening its URL again gives one (the `independent_handles` capability)."""
        if not (isinstance(self.storage, IndependentHandles) and self.storage.independent_handles):
            return self.storage
        try:
            return open_storage(self.storage.url, self.settings.as_dict(), self.queue.pm)
        except GigQError:
            return self.storage

    def rescue(self) -> list[Transition]:
        """Return the jobs of dead workers to pending now; fires their hooks."""
        if self._running and self._wake_r >= 0:
            # Renew our own leases first: a sweep must never rescue this worker's live jobs
            # because its heartbeat thread happened to be waiting for the database.
            with contextlib.suppress(GigQError):
                self._beat_now()
        try:
            transitions = self.storage.rescue(self.clock.now(), self._dead_neighbours())
        except GigQError:
            log.exception("rescue sweep of worker %s failed", self.worker_id)
            return []
        for transition in transitions:
            job = transition.job
            log.info(
                "rescued job %s (%r) from worker %r: worker lost, now %s",
                job.id,
                job.name,
                job.worker_id,
                job.status.value,
            )
            if transition.error is not None:
                self.hooks.job_failed(job, transition.error, final=job.status is JobStatus.FAILED)
            self._fire_cascade(transition)
        return transitions

    # -- the loop --------------------------------------------------------------------------

    def start(self, burst: bool = False) -> None:
        """Run until `stop()` or SIGTERM/SIGINT; then let running jobs finish within the
        grace period, hand back what is left, and return.

        `burst=True` also returns once nothing is running and no job is ready (jobs
        scheduled for later are left for another worker), like RQ's burst mode.
        """
        self._burst = burst
        self._stop.clear()
        self._signals = 0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        restore = self._install_signals()
        now = self.clock.now()
        self.storage.register_worker(
            WorkerInfo(
                id=self.worker_id,
                host=socket.gethostname(),
                pid=os.getpid(),
                queues=self.queues or (),
                concurrency=self.concurrency,
                started_at=now,
                last_heartbeat=now,
            )
        )
        log.info(
            "worker %s started (%s executor, queues: %s, concurrency %d)",
            self.worker_id,
            self.executor,
            ", ".join(self.queues) if self.queues else "all",
            self.concurrency,
        )
        if not self.settings.allowed_modules:
            log.warning(
                "worker %s: allowed_modules is not set, so any job in this store may run any "
                "function importable here outside the standard library and the refused "
                "packages; whoever can write the store can run code as this user. Set "
                "allowed_modules (e.g. GIGQ_ALLOWED_MODULES='myapp.tasks,myapp.jobs.*')",
                self.worker_id,
            )
        self.hooks.worker_started(self.worker_id)
        beat = _Heartbeat(self)
        watcher = _Watcher(self)
        self.heartbeat_storage = self._second_storage()
        # The watcher waits on a handle of its own too: its checks never queue behind (or
        # hold up) the loop's claims and reports.
        self.watch_storage = self._second_storage()
        try:
            if self.executor == "process":
                pool = ProcessPool(
                    self.concurrency,
                    self.serializer,
                    self.settings.max_payload,
                    self.settings.allowed_modules,
                    self.settings.max_jobs_per_child,
                    self.settings.max_child_memory,
                    plugin_settings=tuple(self._declared),
                )
                # Fork the children before any other thread of ours exists, with what the
                # process holds now out of the collector's way (gc.freeze: fewer full
                # collections here, no copy-on-write of the whole heap in the children).
                gc.freeze()
                pool.start()
                self._pool = pool
                beat.start()
                watcher.start()
                self._start_syncer()
                try:
                    self._loop_process(pool)
                finally:
                    pool.shutdown()
                    self._pool = None
                    gc.unfreeze()
                    self._stop_syncer()
            else:
                beat.start()
                watcher.start()
                self._start_syncer()
                self._loop_inline()
        finally:
            self._stop_syncer()
            self._flush()
            self._hand_back()
            watcher.stop()
            beat.stop()
            self.storage.deregister_worker(self.worker_id, self.clock.now())
            for extra in {id(s): s for s in (self.heartbeat_storage, self.watch_storage)}.values():
                if extra is not self.storage:
                    extra.close()
            self.heartbeat_storage = self.watch_storage = self.storage
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
            self._wake_r = self._wake_w = -1
            for sig, handler in restore.items():
                signal.signal(sig, handler)
            log.info("worker %s stopped", self.worker_id)
            self.hooks.worker_stopped(self.worker_id)

    def _start_syncer(self) -> None:
        """Wait for the disk on a thread of its own, where the storage allows it."""
        if isinstance(self.storage, DeferredFinish):
            self._syncer = _Syncer(self, self.storage)
            self._syncer.start()

    def _stop_syncer(self) -> None:
        """Let the syncer finish what it holds, fire those hooks, and flush directly from
        now on."""
        syncer, self._syncer = self._syncer, None
        if syncer is None:
            return
        syncer.stop()
        self._report_committed(syncer.take())

    def _idle_timeout(self) -> float:
        wait = min(self.polling_interval, 1.0)
        now = self.clock.now()
        try:
            due = self.storage.next_due(now, self.queues)
        except StorageError as err:
            self._storage_trouble(err)
            return 0.0
        if due is not None:
            wait = max(0.0, min(wait, (due - now).total_seconds()))
        return wait

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_r, 4096):
                pass

    def _wake(self) -> None:
        if self._wake_w >= 0:
            # A full pipe already wakes the loop.
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._wake_w, b"x")

    def _loop_process(self, pool: ProcessPool) -> None:  # noqa: C901 -- kept whole until the worker is rebuilt
        records: dict[str, JobRecord] = {}
        stop_at: float | None = None
        claimed: list[JobRecord] = []
        while True:
            stopping = self._stop.is_set()
            if stopping and stop_at is None:
                stop_at = self.clock.monotonic() + self.grace
                if pool.busy():
                    log.info(
                        "worker %s: waiting up to %g s for %d running job(s)",
                        self.worker_id,
                        self.grace,
                        len(pool.busy()),
                    )
            if stopping and (not pool.busy() or self.clock.monotonic() >= (stop_at or 0)):
                return  # what is still running is killed by pool.shutdown and handed back
            self._maybe_tick()
            if not stopping:
                self._maybe_sweep()
                claimed += self._claim(len(pool.idle()) - len(claimed))
                if (
                    self._burst
                    and not claimed
                    and not records
                    and not pool.busy()
                    and not self._unflushed  # a flush may release dependents
                ):
                    log.info("worker %s: nothing left to do (burst)", self.worker_id)
                    self.stop()
            self._dispatch(pool, claimed, records)
            # Outcomes wait for company only while jobs run (their ends join the same
            # commit); with nothing running, waiting gains nothing and would hold up the
            # dependents they release.
            if self._unflushed and (self._flush_due() or not pool.busy()):
                self._flush()
                if not stopping and not claimed:
                    claimed = self._claim(len(pool.idle()))
                    self._dispatch(pool, claimed, records)
            # The watcher only watches while a child is free to take new work: while every
            # child is busy, finished attempts wake the loop through their pipes anyway.
            if pool.idle() and not stopping:
                self._idle.set()
            else:
                self._idle.clear()
            if claimed:
                timeout = 0.0  # every free child got a job: more may be ready
            elif pool.busy():
                timeout = 0.1
            else:
                timeout = self._idle_timeout()
            if self._unflushed:
                timeout = min(timeout, max(0.0, self._flush_at - self.clock.monotonic()))
            claimed = []
            ended: list[tuple[JobRecord, AttemptResult]] = []
            for _, (kind, token, payload) in pool.poll(timeout, [self._wake_r]):
                found = records.pop(token, None) if token else None
                if found is None:
                    continue
                if kind == "done":
                    ended.append((found, payload))
                else:  # the child died under the job (segfault, os._exit, OOM killer)
                    ended.append(
                        (
                            found,
                            AttemptResult(
                                status="failed",
                                error=ErrorInfo(
                                    type="JobProcessDied", message=f"the job's process {payload}"
                                ),
                            ),
                        )
                    )
            if ended:
                self._buffer(ended)
                if self.flush_interval <= 0:
                    self._flush()
            if pool.woken:
                self._drain_wake()
            self._fire_durable()
            self._check_timeouts()
            with self._lock:
                doomed = [i for i, r in self._running.items() if r.stop_reason]
            for token in doomed:
                if token in records:
                    pool.kill(token)
                    self._finish(records.pop(token), AttemptResult(status="failed"))

    def _dispatch(
        self, pool: ProcessPool, claimed: list[JobRecord], records: dict[str, JobRecord]
    ) -> None:
        """Send claimed jobs to idle children."""
        for child, record in zip(pool.idle(), claimed, strict=False):
            assert record.token is not None
            records[record.token] = record
            if not may_want_parent_results(record):
                # The child decodes the params itself, off the supervisor's path.
                pool.dispatch(child, record, record.params)
                continue
            try:
                params = self._prepare(record)
            except PermanentError as err:  # parent results over their limit, as inline
                self._finish(
                    record,
                    AttemptResult(
                        status="failed",
                        error=ErrorInfo(type="PermanentError", message=str(err)),
                        permanent=True,
                    ),
                )
                records.pop(record.token, None)
                continue
            except Exception as err:  # undecodable params: the job can never run
                self._finish(
                    record,
                    AttemptResult(
                        status="failed", error=ErrorInfo.from_exception(err), permanent=True
                    ),
                )
                records.pop(record.token, None)
                continue
            pool.dispatch(child, record, params)

    def _loop_inline(self) -> None:
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="gigq-job")
        futures: set[Future[None]] = set()
        self._looping = True
        try:
            while not self._stop.is_set():
                self._maybe_tick()
                self._maybe_sweep()
                futures = {f for f in futures if not f.done()}
                free = self.concurrency - len(futures)
                claimed = self._claim(free)
                if len(claimed) < free:
                    self._idle.set()
                else:
                    self._idle.clear()
                for record in claimed:
                    future = pool.submit(self._run_guarded, record)
                    future.add_done_callback(lambda _: self._wake())
                    futures.add(future)
                # Nothing running and nothing to commit (a commit may release dependents).
                finished = not futures and not self._unflushed
                # As in the process loop: outcomes wait for company only while jobs run.
                if self._unflushed and (self._flush_due() or not futures):
                    self._flush()
                self._fire_durable()
                if self._burst and finished:
                    log.info("worker %s: nothing left to do (burst)", self.worker_id)
                    break
                if claimed and len(claimed) == free:
                    continue
                timeout = 0.1 if free <= 0 else self._idle_timeout()
                if self._unflushed:
                    timeout = min(timeout, max(0.0, self._flush_at - self.clock.monotonic()))
                select.select([self._wake_r], [], [], timeout)
                self._drain_wake()
            futures = {f for f in futures if not f.done()}
            if futures:
                log.info(
                    "worker %s: waiting up to %g s for %d running job(s)",
                    self.worker_id,
                    self.grace,
                    len(futures),
                )
            deadline = self.clock.monotonic() + self.grace
            while futures:
                # The grace period: what ends meanwhile is committed as usual (group
                # commit); past it what still runs is handed back by start().
                left = deadline - self.clock.monotonic()
                if left <= 0:
                    break
                if self._unflushed and self._flush_due():
                    self._flush()
                self._fire_durable()
                timeout = min(left, 0.1)
                if self._unflushed:
                    timeout = min(timeout, max(0.0, self._flush_at - self.clock.monotonic()))
                select.select([self._wake_r], [], [], timeout)
                self._drain_wake()
                futures = {f for f in futures if not f.done()}
            with self._lock:
                for running in self._running.values():
                    running.context._stop.set()
        finally:
            self._looping = False
            pool.shutdown(wait=False, cancel_futures=True)

    def stop(self) -> None:
        """Ask `start()` to return: claim nothing more, finish or hand back running jobs.
        Returns at once."""
        self._stop.set()
        self._wake()

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals += 1
        if self._signals > 1:
            # Second signal: leave at once; live workers rescue the jobs after the lease.
            # The jobs' processes go too, so no job runs on unsupervised.
            log.warning("worker %s: second signal, exiting now", self.worker_id)
            if self._pool is not None:
                self._pool.kill_all()
            os._exit(1)
        log.info(
            "worker %s: %s received, shutting down", self.worker_id, signal.Signals(signum).name
        )
        self.stop()

    def close(self) -> None:
        """Stop the heartbeat thread of process_one(), and close the worker's queue unless
        the caller passed it in (then it stays the caller's to close)."""
        if self._beat_thread is not None:
            self._beat_thread.stop()
            self._beat_thread = None
        if self._owns_queue:
            self.queue.close()

    def __repr__(self) -> str:
        return f"<Worker {self.worker_id} {self.queue.target}>"


class _Heartbeat(threading.Thread):
    """Renews leases and checks inline timeouts, off the job's thread."""

    def __init__(self, worker: Worker) -> None:
        super().__init__(name="gigq-heartbeat", daemon=True)
        self.worker = worker
        self.done = threading.Event()

    def run(self) -> None:
        worker = self.worker
        next_beat = worker.clock.monotonic() + worker.heartbeat_interval
        while not self.done.wait(0.1):
            if worker._check_timeouts():
                worker._wake()
            if worker.clock.monotonic() >= next_beat:
                next_beat = worker.clock.monotonic() + worker.heartbeat_interval
                try:
                    worker._beat_now()
                except GigQError:
                    log.exception("heartbeat of worker %s failed", worker.worker_id)

    def stop(self) -> None:
        self.done.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout=5)


class _Syncer(threading.Thread):
    """Waits for the disk off the worker's loop (group commit without holding the lock).

    The loop commits outcomes with `finish_deferred` and hands them here; this thread
    calls `sync()` (one fsync for everything handed over meanwhile), then wakes the loop,
    which fires their hooks. A crash before that loses no committed outcome; only power
    loss can, and then the jobs run again (their hooks had not fired).
    """

    def __init__(self, worker: Worker, storage: DeferredFinish) -> None:
        super().__init__(name="gigq-sync", daemon=True)
        self.worker = worker
        #: The worker's storage, as the capability the syncer uses.
        self.storage = storage
        self._cond = threading.Condition()
        self._waiting: list[_Committed] = []
        self._durable: list[_Committed] = []
        self._done = False

    def submit(self, committed: list[_Committed]) -> bool:
        """Hand over outcomes to make durable; False once stopping (the caller then syncs
        and reports them itself)."""
        with self._cond:
            if self._done:
                return False
            self._waiting.extend(committed)
            self._cond.notify()
            return True

    def take(self) -> list[_Committed]:
        """The outcomes found durable since the last call."""
        with self._cond:
            durable, self._durable = self._durable, []
        return durable

    def run(self) -> None:
        storage = self.storage
        while True:
            with self._cond:
                while not self._waiting and not self._done:
                    self._cond.wait()
                if not self._waiting:
                    return
                batch, self._waiting = self._waiting, []
            try:
                storage.sync()
            except GigQError:
                # The rows are committed; only their durability against power loss is in
                # doubt. Say so, and go on.
                log.exception("worker %s: waiting for the disk failed", self.worker.worker_id)
            with self._cond:
                self._durable.extend(batch)
            self.worker._wake()

    def stop(self) -> None:
        with self._cond:
            self._done = True
            self._cond.notify()
        if self.is_alive():
            self.join(timeout=30)


class _Watcher(threading.Thread):
    """Wakes the loop when the storage changes (a submit, a finish elsewhere)."""

    def __init__(self, worker: Worker) -> None:
        super().__init__(name="gigq-watcher", daemon=True)
        self.worker = worker
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            if not self.worker._idle.wait(0.25):
                continue
            try:
                changed = self.worker.watch_storage.wait_for_work(0.25)
            except GigQError:
                changed = False
                self.done.wait(0.5)
            if changed and not self.done.is_set():
                self.worker._wake()

    def stop(self) -> None:
        self.done.set()
        if self.is_alive():
            self.join(timeout=5)


__all__ = ["EXECUTORS", "Worker"]
