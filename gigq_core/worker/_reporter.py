"""The reporter: buffers attempts' outcomes, commits them together, and is the only place
that turns committed transitions into log lines and hook calls."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from gigq_core.errors import GigQError
from gigq_core.execution import AttemptResult, decide
from gigq_core.limits import clip_error
from gigq_core.logs import printable
from gigq_core.plugins import Hooks
from gigq_core.ports import Clock, DeferredFinish, Serializer, Storage
from gigq_core.records import (
    FREE_HANDBACKS,
    ErrorInfo,
    JobRecord,
    JobStatus,
    Outcome,
    Transition,
)
from gigq_core.worker._imports import ImportBackoff
from gigq_core.worker._leases import LeaseTable
from gigq_core.worker._syncer import Committed, Report, Syncer

log = logging.getLogger("gigq")

#: Most outcomes one flush holds (the SIGKILL chaos test of docs/guarantees.md counts them
#: as extra executions a kill may cause).
FLUSH_MAX_JOBS = 32


def _log_with_traceback(level: int, traceback: str, message: str, *args: object) -> None:
    """Log one record whose traceback (the text an attempt stored, not an exception of this
    process) follows the message on lines of its own, as `log.exception` shows one.

    The text goes in the record's `exc_text`, which every `logging.Formatter` appends; it is
    made printable here, since no formatter escapes an `exc_text` it did not make itself,
    and each line is indented: the error's message ends a traceback, and a line of it that
    looks like a log record must not pass for one.
    """
    if not log.isEnabledFor(level):
        return
    path, lineno, function, _ = log.findCaller(stacklevel=2)
    record = log.makeRecord(log.name, level, path, lineno, message, args, None, function)
    text = printable(traceback.rstrip("\n"), keep_newlines=True)
    record.exc_text = "\n".join(f"  {line}" for line in text.split("\n")) if text else None
    log.handle(record)


def _retry_when(run_at: datetime, now: datetime) -> str:
    """When a retried job runs again: "at once", or "in 2.5 s (at 2024-05-01 14:03:22 UTC)"."""
    seconds = (run_at - now).total_seconds()
    if seconds < 0.001:
        return "at once"
    for unit, size in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            amount = f"{seconds / size:.3g} {unit}"
            break
    else:
        amount = f"{seconds:.3g} s"
    return f"in {amount} (at {run_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC)"


class Reporter:
    """Decides, buffers and commits the outcomes of a worker's attempts; fires their hooks.

    Group commit (docs/guarantees.md): one durable commit records every outcome held, at
    the latest `flush_interval` seconds after the first; hooks fire only after it. Until
    then the jobs stay `running` under their leases (the heartbeat renews them), so a crash
    in between makes them run again, never lost.
    """

    def __init__(
        self,
        *,
        worker_id: str,
        storage: Storage,
        leases: LeaseTable,
        clock: Clock,
        hooks: Hooks,
        serializer: Serializer,
        strategies: dict[str, Callable[..., Any]],
        max_error_length: int,
        flush_interval: float,
        wake: Callable[[], None],
        retry_log_level: int = logging.WARNING,
        imports: ImportBackoff | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.storage = storage
        self.leases = leases
        self.clock = clock
        self.hooks = hooks
        self.serializer = serializer
        self.strategies = strategies
        self.max_error_length = max_error_length
        self.flush_interval = flush_interval
        #: The level of the log record of a failed attempt that will be retried (setting
        #: `retry_log_level`); a failure for good is always logged at ERROR.
        self.retry_log_level = retry_log_level
        self._wake = wake
        #: Learns which modules this worker cannot import (and backs off from their jobs).
        self.imports = imports
        #: Outcomes decided but not yet committed, and when they are due.
        self._unflushed: list[Report] = []
        self.flush_at = 0.0
        #: Waits for the disk off the loop (storage that can defer it).
        self._syncer: Syncer | None = None

    @property
    def has_unflushed(self) -> bool:
        """Whether outcomes wait for a commit."""
        return bool(self._unflushed)

    def unflushed_records(self) -> list[JobRecord]:
        """The records of the outcomes waiting for a commit (call under the leases' lock)."""
        return [record for record, _, _, _ in self._unflushed]

    def flush_wait(self, timeout: float) -> float:
        """`timeout`, shortened to the next flush when outcomes wait for one."""
        if self._unflushed:
            timeout = min(timeout, max(0.0, self.flush_at - self.clock.monotonic()))
        return timeout

    def started(self, record: JobRecord) -> None:
        """Log a claimed attempt's start and fire its hook (the claim is committed)."""
        log.debug("start job %s (%r) attempt %d", record.id, record.name, record.attempts)
        self.hooks.job_started(record, record.attempts, self.worker_id)

    def finish(self, record: JobRecord, attempt: AttemptResult) -> None:
        """Report one attempt's end now (fenced by its token), with whatever outcomes wait
        in the buffer; then log it and fire its hooks."""
        self.buffer([(record, attempt)])
        self.flush()

    def buffer(self, ended: Sequence[tuple[JobRecord, AttemptResult]]) -> None:
        """Decide the outcomes of ended attempts and hold them for the next flush."""
        reports = [report for r, a in ended if (report := self._outcome(r, a)) is not None]
        if not reports:
            return
        with self.leases.lock:
            if not self._unflushed:
                self.flush_at = self.clock.monotonic() + self.flush_interval
            self._unflushed.extend(reports)

    def flush_due(self) -> bool:
        """Whether the held outcomes should be committed now."""
        return bool(self._unflushed) and (
            len(self._unflushed) >= FLUSH_MAX_JOBS or self.clock.monotonic() >= self.flush_at
        )

    def flush(self) -> None:
        """Commit every held outcome in one transaction; log and fire hooks once it is
        durable.

        With a syncer running (on storage that offers `finish_deferred` and `sync`), the
        commit releases the write lock before the disk has the rows and the syncer thread
        waits for the disk; the loop fires the hooks when it reports back
        (`fire_durable`). Otherwise the commit itself is durable.
        """
        with self.leases.lock:
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

    def fire_durable(self) -> None:
        """Log and fire the hooks of outcomes the syncer found durable."""
        if self._syncer is not None:
            self._report_committed(self._syncer.take())

    def start_syncer(self) -> None:
        """Wait for the disk on a thread of its own, where the storage allows it."""
        if isinstance(self.storage, DeferredFinish):
            self._syncer = Syncer(self.worker_id, self.storage, self._wake)
            self._syncer.start()

    def stop_syncer(self) -> None:
        """Let the syncer finish what it holds, fire those hooks, and flush directly from
        now on."""
        syncer, self._syncer = self._syncer, None
        if syncer is None:
            return
        syncer.stop()
        self._report_committed(syncer.take())

    def _report_committed(self, committed: Sequence[Committed]) -> None:
        for record, attempt, outcome, delay, transition in committed:
            self._reported(record, attempt, outcome, delay, transition)

    def _outcome(self, record: JobRecord, attempt: AttemptResult) -> Report | None:
        """The outcome to report for an attempt, or None when the job was taken away."""
        running = self.leases.release(record.token or "")
        reason = running.stop_reason if running else None
        if self.imports is not None:
            self.imports.attempt_ended(record, attempt)
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
            attempt = attrs.evolve(attempt, error=clip_error(attempt.error, self.max_error_length))
        outcome, delay = decide(record, attempt, self.clock.now(), self.strategies)
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
        if outcome.status == "handed_back" and transition.job.status is JobStatus.PENDING:
            # This worker could not import the job's module (said at ERROR when its back-off
            # began): no attempt happened, so no hook fires.
            log.info(
                "job %s (%r) handed back, its attempt not counted (%d of %d free hand-backs "
                "used): %s",
                record.id,
                record.name,
                transition.job.handbacks,
                FREE_HANDBACKS,
                printable(str(outcome.error or "")),
            )
            return
        self._log_outcome(record, attempt, outcome, transition)
        self._fire(transition, attempt, delay)

    def _log_outcome(
        self, record: JobRecord, attempt: AttemptResult, outcome: Outcome, transition: Transition
    ) -> None:
        """One record per committed outcome: a failure for good at ERROR with its error and
        traceback, a failure to be retried at `retry_log_level` with its error and when it
        runs again, anything else at INFO. Without the error in the log, a failing job is
        invisible to whoever watches the worker. The error is made printable in the message
        (a job's author wrote it), so any handler gets the message as one line."""
        job = transition.job
        error = transition.error or outcome.error or attempt.error
        ended = "timed out" if outcome.status == "timeout" else outcome.status
        head = "job %s (%r) attempt %d/%d"
        args: tuple[object, ...] = (record.id, record.name, record.attempts, record.max_attempts)
        if job.status in (JobStatus.FAILED, JobStatus.TIMEOUT) and error is not None:
            _log_with_traceback(
                logging.ERROR,
                error.traceback,
                f"{head} %s for good in %.3f s: %s",
                *args,
                ended,
                attempt.duration,
                printable(str(error)),
            )
        elif job.status is JobStatus.PENDING and error is not None:
            log.log(
                self.retry_log_level,
                f"{head} %s in %.3f s: %s; retry %s",
                *args,
                ended,
                attempt.duration,
                printable(str(error)),
                _retry_when(job.run_at, self.clock.now()),
            )
        else:
            status = job.status.value if outcome.status == "completed" else outcome.status
            why = f": {printable(str(error))}" if error is not None else ""
            log.info(f"{head} %s in %.3f s%s", *args, status, attempt.duration, why)

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

    def hand_back(self) -> None:
        """Return every job still held to pending (graceful shutdown, D4)."""
        left = self.leases.release_all()
        outcomes = [
            Outcome(job_id=r.id, token=r.token, status="handed_back")
            for r in left
            if r.token is not None
        ]
        if not outcomes:
            return
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
            error = ErrorInfo(type="HandedBack", message=job.error or "handed back")
            log.error("job %s (%r) failed for good: %s", job.id, job.name, printable(str(error)))
            self.hooks.job_failed(job, error, final=True)
            self._fire_cascade(transition)

    def rescued(self, transitions: Sequence[Transition]) -> None:
        """Log the jobs a rescue sweep returned or failed, and fire their hooks."""
        for transition in transitions:
            job = transition.job
            if transition.previous is JobStatus.RESERVED:
                log.info(
                    "returned job %s (%r) to pending: reserved by a lost worker, never started",
                    job.id,
                    job.name,
                )
                continue
            # Like an attempt's failure: for good at ERROR, to be retried at retry_log_level.
            final = job.status in (JobStatus.FAILED, JobStatus.TIMEOUT)
            log.log(
                logging.ERROR if final else self.retry_log_level,
                "rescued job %s (%r) from worker %r: worker lost, now %s%s",
                job.id,
                job.name,
                job.worker_id,
                job.status.value,
                " for good" * final,
            )
            if transition.error is not None:
                self.hooks.job_failed(job, transition.error, final=job.status is JobStatus.FAILED)
            self._fire_cascade(transition)
