"""The inline executor: jobs run in the worker's own process (threads when
`concurrency > 1`), for tests and embedding. Timeouts and cancellation are cooperative
there (`current_job().is_cancelled()`); an attempt that overran is recorded as `timeout`
when it returns."""

from __future__ import annotations

import logging
import select
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from gigq_core.execution import AttemptResult, PermanentError, load_function, run_attempt
from gigq_core.records import ErrorInfo, JobRecord
from gigq_core.worker._params import prepare_params

if TYPE_CHECKING:
    from gigq_core.worker._supervisor import Worker

log = logging.getLogger("gigq")


def run_inline(worker: Worker, record: JobRecord) -> None:
    """Run one claimed job in this thread and buffer its outcome (committed here unless
    the inline loop runs, which commits it with whatever else ended meanwhile)."""
    running = worker.leases.get(record.token or "")
    try:
        params = prepare_params(record, worker.serializer, worker.storage, worker.settings)
        function = load_function(record, worker.settings.allowed_modules)
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
                worker.serializer,
                worker.settings.max_payload,
            )
        except KeyboardInterrupt:
            worker.reporter.hand_back()
            raise
    worker.reporter.buffer([(record, attempt)])
    # Under start(), the loop commits it with whatever else ended meanwhile (group
    # commit) and fires its hooks; the pool's done-callback wakes it. Otherwise (or
    # once the loop has ended: it flushes after clearing the flag, so every outcome
    # buffered before this check is its to commit) this thread commits it now.
    if not worker._looping:
        worker.reporter.flush()


class InlineLoop:
    """Runs a worker's jobs on a pool of threads until the worker stops."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.futures: set[Future[None]] = set()

    def run(self) -> None:
        """Claim, run and report until stopped, then wait out the grace period (what
        still runs past it is handed back by the worker)."""
        worker = self.worker
        pool = ThreadPoolExecutor(worker.concurrency, thread_name_prefix="gigq-job")
        worker._looping = True
        try:
            self._serve(pool)
            self._wait_grace()
            worker.leases.stop_all()
        finally:
            worker._looping = False
            pool.shutdown(wait=False, cancel_futures=True)

    def _serve(self, pool: ThreadPoolExecutor) -> None:
        worker, reporter = self.worker, self.worker.reporter
        while not worker._stop.is_set():
            worker.maintenance.maybe_tick()
            worker.maintenance.maybe_sweep()
            self.futures = {f for f in self.futures if not f.done()}
            free = worker.concurrency - len(self.futures)
            claimed = worker._claim(free)
            if len(claimed) < free:
                worker._idle.set()
            else:
                worker._idle.clear()
            for record in claimed:
                future = pool.submit(self._run_guarded, record)
                future.add_done_callback(lambda _: worker._wake())
                self.futures.add(future)
            # Nothing running and nothing to commit (a commit may release dependents).
            finished = not self.futures and not reporter.has_unflushed
            # As in the process loop: outcomes wait for company only while jobs run.
            if reporter.has_unflushed and (reporter.flush_due() or not self.futures):
                reporter.flush()
            reporter.fire_durable()
            if worker._burst and finished:
                log.info("worker %s: nothing left to do (burst)", worker.worker_id)
                return
            if claimed and len(claimed) == free:
                continue
            timeout = 0.1 if free <= 0 else worker._idle_timeout()
            select.select([worker._wake_r], [], [], reporter.flush_wait(timeout))
            worker._drain_wake()

    def _wait_grace(self) -> None:
        worker, reporter = self.worker, self.worker.reporter
        futures = {f for f in self.futures if not f.done()}
        if futures:
            log.info(
                "worker %s: waiting up to %g s for %d running job(s)",
                worker.worker_id,
                worker.grace,
                len(futures),
            )
        deadline = worker.clock.monotonic() + worker.grace
        while futures:
            # The grace period: what ends meanwhile is committed as usual (group
            # commit); past it what still runs is handed back by start().
            left = deadline - worker.clock.monotonic()
            if left <= 0:
                break
            if reporter.has_unflushed and reporter.flush_due():
                reporter.flush()
            reporter.fire_durable()
            select.select([worker._wake_r], [], [], reporter.flush_wait(min(left, 0.1)))
            worker._drain_wake()
            futures = {f for f in futures if not f.done()}

    def _run_guarded(self, record: JobRecord) -> None:
        try:
            run_inline(self.worker, record)
        except Exception:  # a bug in reporting must not kill the pool thread silently
            log.exception("worker failed while running job %s", record.id)
