"""`Worker`: claims jobs, runs them, reports their outcomes, heartbeats and rescues.

This first worker runs jobs in its own process (`executor="inline"`): one at a time, or in
threads when `concurrency > 1`. Hard timeouts need the process executor; inline timeouts are
cooperative (`current_job().is_cancelled()`), and an attempt that overran is recorded as
`timeout` when it returns.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pluggy

from gigq_core.context import JobContext
from gigq_core.errors import GigQError
from gigq_core.execution import (
    AttemptResult,
    PermanentError,
    decide,
    load_function,
    run_attempt,
    wants_parent_results,
)
from gigq_core.ports import Clock, Serializer
from gigq_core.queue import JobQueue
from gigq_core.records import (
    ErrorInfo,
    JobRecord,
    JobStatus,
    Outcome,
    Transition,
    WorkerInfo,
)

log = logging.getLogger("gigq")

EXECUTORS = ("inline",)


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
        plugin_manager: pluggy.PluginManager | None = None,
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
            **settings,
        }
        self.queue = (
            target
            if isinstance(target, JobQueue)
            else JobQueue(
                target,
                plugin_manager=plugin_manager,
                clock=clock,
                serializer=serializer,
                **overrides,
            )
        )
        merged = dict(self.queue.settings)
        merged.update({k: v for k, v in overrides.items() if v is not None})
        self.settings = merged
        self.storage = self.queue.storage
        self.hooks = self.queue.hooks
        self.clock = self.queue.clock
        self.serializer = self.queue.serializer
        self.concurrency = int(merged["concurrency"])
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        self.polling_interval = float(merged["polling_interval"])
        self.lease = float(merged["lease"])
        self.heartbeat_interval = float(merged["heartbeat"])
        self.sweep_interval = float(merged["sweep_interval"])
        self.grace = float(merged["grace"])
        # Until the process executor lands, every worker runs jobs inline (see module doc).
        self.executor = "inline"
        if isinstance(queues, str):
            queues = [queues]
        self.queues: tuple[str, ...] | None = tuple(queues) if queues else None
        self.worker_id = worker_id or (
            f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        )
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        self._last_sweep = float("-inf")
        self._signals = 0
        self._pool: ThreadPoolExecutor | None = None
        self._futures: set[Future[None]] = set()

    # -- running one job -------------------------------------------------------------------

    def process_one(self) -> bool:
        """Claim at most one ready job and run it in this thread; True if one was claimed."""
        self._maybe_sweep()
        claimed = self._claim(1)
        if not claimed:
            return False
        beat = _Heartbeat(self)
        beat.start()
        try:
            self._run(claimed[0])
        finally:
            beat.stop()
        return True

    def _claim(self, limit: int) -> list[JobRecord]:
        now = self.clock.now()
        claimed = self.storage.claim(self.worker_id, limit, now, self.lease, self.queues)
        for record in claimed:
            context = JobContext(
                id=record.id,
                name=record.name,
                attempt=record.attempts,
                worker_id=self.worker_id,
                beat=self._beat_now,
            )
            with self._lock:
                self._running[record.id] = _Running(record, context, self.clock.monotonic())
            log.debug("start job %s (%s) attempt %d", record.id, record.name, record.attempts)
            self.hooks.job_started(record, record.attempts, self.worker_id)
        return claimed

    def _run(self, record: JobRecord) -> None:
        running = self._running[record.id]
        try:
            attempt = self._attempt(record, running.context)
        except KeyboardInterrupt:
            self._report(
                record, AttemptResult(status="handed_back"), handed_back=True
            )
            raise
        if running.stop_reason == "timeout":
            attempt = AttemptResult(
                status="timeout",
                error=ErrorInfo(type="Timeout", message=f"timed out after {record.timeout:g} s"),
                duration=attempt.duration,
            )
        elif running.stop_reason == "cancelled":
            attempt = AttemptResult(
                status="cancelled",
                error=ErrorInfo(type="Cancelled", message="cancelled while running"),
                duration=attempt.duration,
            )
        self._report(record, attempt)

    def _attempt(self, record: JobRecord, context: JobContext) -> AttemptResult:
        try:
            function = load_function(record, self.settings["allowed_modules"])
            params = self.serializer.loads(record.params)
            if wants_parent_results(function, record):
                parents = self.storage.get_many(list(record.dependencies))
                params["parent_results"] = {
                    dep: self.serializer.loads(parents[dep].result)
                    if dep in parents and parents[dep].result is not None
                    else None
                    for dep in record.dependencies
                }
        except PermanentError as err:
            return AttemptResult(
                status="failed",
                error=ErrorInfo(type="PermanentError", message=str(err)),
                permanent=True,
            )
        except Exception as err:  # undecodable params: the job cannot run, ever
            return AttemptResult(
                status="failed", error=ErrorInfo.from_exception(err), permanent=True
            )
        return run_attempt(
            record, function, params, context, self.serializer, self.settings["max_payload"]
        )

    def _report(self, record: JobRecord, attempt: AttemptResult, handed_back: bool = False) -> None:
        now = self.clock.now()
        if handed_back:
            assert record.token is not None
            outcome = Outcome(job_id=record.id, token=record.token, status="handed_back")
            delay = None
        else:
            outcome, delay = decide(record, attempt, now, self.queue._strategies)
        with self._lock:
            self._running.pop(record.id, None)
        try:
            [transition] = self.storage.finish([outcome], now)
        except GigQError:
            log.exception("could not record the outcome of job %s; its lease will expire "
                          "and it will be rescued", record.id)
            return
        if transition is None:
            log.warning(
                "job %s (%s) attempt %d: outcome %s ignored, the attempt no longer holds the "
                "job (rescued, timed out or cancelled elsewhere)",
                record.id, record.name, record.attempts, outcome.status,
            )
            return
        log.info(
            "job %s (%s) attempt %d %s in %.3f s",
            record.id, record.name, record.attempts, outcome.status, attempt.duration,
        )
        self._fire(transition, attempt, delay)

    def _fire(self, transition: Transition, attempt: AttemptResult, delay: float | None) -> None:
        job = transition.job
        error = transition.error or attempt.error
        if job.status is JobStatus.COMPLETED:
            self.hooks.job_succeeded(job, attempt.value, attempt.duration)
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
        self.fire_cascade(transition)

    def fire_cascade(self, transition: Transition) -> None:
        """Fire gigq_job_cancelled for each dependent a transition cancelled."""
        for child in transition.cancelled:
            self.hooks.job_cancelled(child, child.error or "cancelled")

    # -- heartbeat, rescue, tick ------------------------------------------------------------

    def _beat_now(self) -> None:
        with self._lock:
            held = {
                job_id: r.record.token
                for job_id, r in self._running.items()
                if r.record.token is not None
            }
        now = self.clock.now()
        reply = self.storage.heartbeat(self.worker_id, held, now, self.lease)
        with self._lock:
            for job_id in reply.lost:
                if job_id in self._running:
                    self._running[job_id].stop_reason = "lost"
                    self._running[job_id].context._stop.set()
            for job_id in reply.cancel_requested:
                if job_id in self._running:
                    self._running[job_id].stop_reason = "cancelled"
                    self._running[job_id].context._stop.set()

    def _check_timeouts(self) -> None:
        mono = self.clock.monotonic()
        with self._lock:
            for running in self._running.values():
                timeout = running.record.timeout
                if (
                    timeout is not None
                    and running.stop_reason is None
                    and mono - running.started > timeout
                ):
                    running.stop_reason = "timeout"
                    running.context._stop.set()

    def _maybe_sweep(self) -> None:
        mono = self.clock.monotonic()
        if mono - self._last_sweep < self.sweep_interval:
            return
        self._last_sweep = mono
        self.rescue()

    def rescue(self) -> list[Transition]:
        """Return the jobs of dead workers to pending now; fires their hooks."""
        transitions = self.storage.rescue(self.clock.now())
        for transition in transitions:
            job = transition.job
            log.info(
                "rescued job %s (%s) from worker %s: worker lost, now %s",
                job.id, job.name, job.worker_id, job.status.value,
            )
            assert transition.error is not None
            self.hooks.job_failed(job, transition.error, final=job.status is JobStatus.FAILED)
            self.fire_cascade(transition)
        return transitions

    # -- the loop --------------------------------------------------------------------------

    def start(self) -> None:
        """Run until `stop()` or SIGTERM/SIGINT; then hand back what is still running."""
        self._stop.clear()
        restore = self._install_signals()
        self.storage.register_worker(
            WorkerInfo(
                id=self.worker_id,
                host=socket.gethostname(),
                pid=os.getpid(),
                queues=self.queues or (),
                concurrency=self.concurrency,
                started_at=self.clock.now(),
                last_heartbeat=self.clock.now(),
            )
        )
        log.info(
            "worker %s started (queues: %s, concurrency %d)",
            self.worker_id, ", ".join(self.queues) if self.queues else "all", self.concurrency,
        )
        self.hooks.worker_started(self.worker_id)
        beat = _Heartbeat(self)
        beat.start()
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="gigq-job")
        try:
            self._loop()
        finally:
            self._shutdown(beat)
            for sig, handler in restore.items():
                signal.signal(sig, handler)

    def _loop(self) -> None:
        last_tick = float("-inf")
        while not self._stop.is_set():
            mono = self.clock.monotonic()
            if mono - last_tick >= 1.0:
                last_tick = mono
                self.hooks.worker_tick(self.worker_id, self.clock.now())
            self._maybe_sweep()
            self._futures = {f for f in self._futures if not f.done()}
            free = self.concurrency - len(self._futures)
            claimed = self._claim(free) if free > 0 else []
            for record in claimed:
                assert self._pool is not None
                self._futures.add(self._pool.submit(self._run_guarded, record))
            if claimed and len(claimed) == free:
                continue
            if free <= 0 or not claimed:
                self._idle_wait()

    def _run_guarded(self, record: JobRecord) -> None:
        try:
            self._run(record)
        except Exception:  # a bug in reporting must not kill the pool thread silently
            log.exception("worker failed while running job %s", record.id)

    def _idle_wait(self) -> None:
        wait = min(self.polling_interval, 1.0)
        now = self.clock.now()
        due = self.storage.next_due(now, self.queues)
        if due is not None:
            wait = max(0.0, min(wait, (due - now).total_seconds()))
        if wait > 0:
            self.storage.wait_for_work(wait)

    def _shutdown(self, beat: _Heartbeat) -> None:
        assert self._pool is not None
        pending = [f for f in self._futures if not f.done()]
        if pending:
            log.info("worker %s: waiting up to %g s for %d running job(s)",
                     self.worker_id, self.grace, len(pending))
            done_by = self.clock.monotonic() + self.grace
            for future in pending:
                left = done_by - self.clock.monotonic()
                try:
                    future.result(timeout=max(0.0, left))
                except Exception:  # a timeout here means: hand it back below
                    pass
        with self._lock:
            left_over = [r.record for r in self._running.values()]
            for running in self._running.values():
                running.context._stop.set()
        if left_over:
            now = self.clock.now()
            outcomes = [
                Outcome(job_id=r.id, token=r.token, status="handed_back")
                for r in left_over
                if r.token is not None
            ]
            self.storage.finish(outcomes, now)
            log.info("worker %s handed back %d job(s)", self.worker_id, len(outcomes))
        beat.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.storage.deregister_worker(self.worker_id, self.clock.now())
        log.info("worker %s stopped", self.worker_id)
        self.hooks.worker_stopped(self.worker_id)

    def stop(self) -> None:
        """Ask `start()` to return: claim nothing more, finish or hand back running jobs."""
        self._stop.set()
        # Wake an idle wait at once instead of after the polling interval.
        wake = getattr(self.storage, "wake", None)
        if callable(wake):
            wake()

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        restore = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            restore[sig] = signal.signal(sig, self._on_signal)
        return restore

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("worker %s: second signal, exiting at once", self.worker_id)
            os._exit(1)
        log.info("worker %s: %s received, shutting down", self.worker_id,
                 signal.Signals(signum).name)
        self.stop()

    def close(self) -> None:
        """Close the worker's queue."""
        self.queue.close()

    def __repr__(self) -> str:
        return f"<Worker {self.worker_id} {self.queue.target}>"


class _Heartbeat(threading.Thread):
    """Renews leases, checks timeouts and sweeps, off the job's thread."""

    def __init__(self, worker: Worker) -> None:
        super().__init__(name="gigq-heartbeat", daemon=True)
        self.worker = worker
        self.done = threading.Event()

    def run(self) -> None:
        worker = self.worker
        next_beat = worker.clock.monotonic() + worker.heartbeat_interval
        while not self.done.wait(0.1):
            worker._check_timeouts()
            if worker.clock.monotonic() >= next_beat:
                next_beat = worker.clock.monotonic() + worker.heartbeat_interval
                try:
                    worker._beat_now()
                except GigQError:
                    log.exception("heartbeat of worker %s failed", worker.worker_id)

    def stop(self) -> None:
        self.done.set()
        if self is not threading.current_thread():
            self.join(timeout=5)


__all__ = ["Worker"]
