"""The inline executor: jobs run in the worker's own process (threads when
`concurrency > 1`), for tests and embedding. Timeouts and cancellation are cooperative
there (`current_job().is_cancelled()`); an attempt that overran is recorded as `timeout`
when it returns."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from gigq_core.execution import (
    AttemptResult,
    ModuleUnavailableError,
    PermanentError,
    load_function,
    run_attempt,
)
from gigq_core.records import ErrorInfo, JobRecord
from gigq_core.worker._loop import Ended
from gigq_core.worker._params import prepare_params

if TYPE_CHECKING:
    from gigq_core.worker._supervisor import Worker

log = logging.getLogger("gigq")


def run_inline(worker: Worker, record: JobRecord) -> None:
    """Run one claimed job in this thread and buffer its outcome (committed here unless
    the worker's loop runs, which commits it with whatever else ended meanwhile)."""
    running = worker.leases.get(record.token or "")
    try:
        params = prepare_params(record, worker.serializer, worker.storage, worker.settings)
        function = load_function(record, worker.settings.allowed_modules)
    except ModuleUnavailableError as err:  # the worker's problem: the job is handed back
        attempt = AttemptResult.cannot_import(err)
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


class InlineExecutor:
    """Runs a worker's attempts on threads of its own process (an `Executor`); the job
    threads hand their outcomes to the reporter themselves."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.threads = ThreadPoolExecutor(worker.concurrency, thread_name_prefix="gigq-job")
        self.futures: set[Future[None]] = set()
        worker._looping = True

    def capacity(self) -> int:
        """Free threads."""
        return self.worker.concurrency - self.running()

    def running(self) -> int:
        """Jobs not yet ended."""
        self.futures = {f for f in self.futures if not f.done()}
        return len(self.futures)

    def submit(self, records: Sequence[JobRecord]) -> list[Ended]:
        """Start each job on a thread."""
        for record in records:
            future = self.threads.submit(self._run_guarded, record)
            future.add_done_callback(lambda _: self.worker.wakeup.wake())
            self.futures.add(future)
        return []

    def poll(self, timeout: float) -> list[Ended]:
        """Wait for a job to end or the worker to be woken (ends reach the reporter from
        the job threads)."""
        self.worker.wakeup.wait(timeout)
        return []

    def kill(self, token: str) -> JobRecord | None:
        """Nothing to kill: the job was asked to stop (cooperatively) and ends by itself."""
        return None

    def shutdown(self) -> None:
        """Ask what still runs to stop, stop taking outcomes from late job threads (they
        commit their own from now on), and wait for them.

        A thread cannot be killed, so a job still running past the grace period is never
        handed back: another worker would run it while its thread goes on here. It stays
        under its lease, which the heartbeat keeps renewing, and its thread commits its
        outcome when it ends. A second signal exits the process at once: the job's thread
        dies with it, and the rescue returns the job once its lease expires (counting
        the attempt)."""
        worker = self.worker
        worker.leases.stop_all()
        worker._looping = False
        self.threads.shutdown(wait=False, cancel_futures=True)
        late = {f for f in self.futures if not f.done()}
        if late:
            log.warning(
                "worker %s: %d inline job(s) still running past the grace period; an "
                "inline job cannot be stopped or handed back while its thread runs, so "
                "the worker waits for it (a second signal exits at once and leaves the "
                "job to the rescue)",
                worker.worker_id,
                len(late),
            )
        while late:
            # Short waits: the main thread stays free to take a second signal.
            _, pending = wait(late, timeout=0.2)
            late = set(pending)

    def _run_guarded(self, record: JobRecord) -> None:
        try:
            run_inline(self.worker, record)
        except Exception:  # a bug in reporting must not kill the pool thread silently
            log.exception("worker failed while running job %s", record.id)
