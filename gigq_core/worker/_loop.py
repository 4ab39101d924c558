"""The worker's one loop, and the `Executor` protocol it drives (processes or threads)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from gigq_core.execution import AttemptResult
from gigq_core.records import JobRecord

if TYPE_CHECKING:
    from gigq_core.worker._supervisor import Worker

log = logging.getLogger("gigq")

#: An attempt that ended, with its result.
Ended = tuple[JobRecord, AttemptResult]


class Executor(Protocol):
    """Where a worker's attempts run: a pool of child processes, or threads of its own."""

    def capacity(self) -> int:
        """How many more attempts it can start now."""
        ...

    def running(self) -> int:
        """How many attempts it runs now."""
        ...

    def submit(self, records: Sequence[JobRecord]) -> list[Ended]:
        """Start claimed attempts (no more than `capacity()`); returns those that ended
        before they started (their params cannot be prepared), to be reported at once."""
        ...

    def poll(self, timeout: float) -> list[Ended]:
        """Wait up to `timeout` seconds for attempts to end or the worker to be woken;
        returns the attempts that ended and whose outcomes the loop reports (an executor
        may instead hand them to the reporter itself)."""
        ...

    def kill(self, token: str) -> JobRecord | None:
        """Stop the attempt `token` at once (it was asked to stop: timed out, cancelled,
        lost); returns its record when it was killed, None when it can only be asked to
        stop (cooperatively) and will end by itself."""
        ...

    def shutdown(self) -> None:
        """Stop every attempt still running (the worker hands their jobs back) and
        release what the executor holds."""
        ...


def _log_waiting(worker: Worker, running: int, seconds: float) -> None:
    """Say what a stopping worker waits for, how long at most, and (when a signal stopped
    it) that a second one stops it at once: someone who pressed Ctrl-C and sees nothing
    happen should not have to guess."""
    seconds = max(seconds, 0.0)
    shown = f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.2g}"
    jobs = "1 running job" if running == 1 else f"{running} running jobs"
    hint = worker.second_signal_hint()
    log.info(
        "worker %s: stopping: waiting up to %s s for %s%s",
        worker.worker_id,
        shown,
        jobs,
        f"; {hint}" if hint else "",
    )


def run_loop(worker: Worker, executor: Executor) -> None:
    """Claim, start, collect and report until the worker stops, then wait out the grace
    period for what still runs (the caller shuts the executor down and hands back what is
    left)."""
    reporter = worker.reporter
    stop_at: float | None = None
    while True:
        stopping = worker._stop.is_set()
        if stopping and stop_at is None:
            # The grace period runs from the stop request (a hook may have held the loop
            # since; see `HookRunner`).
            left = worker.grace_left()
            stop_at = worker.clock.monotonic() + (worker.grace if left is None else left)
            # What never started goes back at once, uncounted, for another worker.
            worker.claims.hand_back_reserved()
            if executor.running():
                _log_waiting(worker, executor.running(), stop_at - worker.clock.monotonic())
        if stopping and (not executor.running() or worker.clock.monotonic() >= (stop_at or 0)):
            return
        worker.maintenance.maybe_tick()
        claimed: list[JobRecord] = []
        if not stopping:
            worker.maintenance.maybe_sweep()
            claimed = worker.claims.claim(executor.capacity())
            if (
                worker._burst
                and not claimed
                and not executor.running()
                and not reporter.has_unflushed  # a flush may release dependents
            ):
                log.info("worker %s: nothing left to do (burst)", worker.worker_id)
                worker.stop()
        _submit(worker, executor, claimed)
        # Outcomes wait for company only while jobs run (their ends join the same commit);
        # with nothing running, waiting gains nothing and would hold up the dependents
        # they release.
        if reporter.has_unflushed and (reporter.flush_due() or not executor.running()):
            reporter.flush()
            if not stopping and not claimed:
                claimed = worker.claims.claim(executor.capacity())
                _submit(worker, executor, claimed)
        # The watcher only watches while the executor could start new work: while it is
        # full, finished attempts wake the loop anyway.
        if executor.capacity() and not stopping:
            worker._idle.set()
        else:
            worker._idle.clear()
        if claimed:
            timeout = 0.0  # every free slot got a job: more may be ready
        elif executor.running():
            timeout = 0.1
        else:
            timeout = worker.claims.idle_timeout()
        _collect(worker, executor, reporter.flush_wait(timeout))


def _collect(worker: Worker, executor: Executor, timeout: float) -> None:
    """Wait up to `timeout` for ends, buffer them, fire the hooks of what is durable, and
    kill the attempts asked to stop."""
    reporter = worker.reporter
    ended = executor.poll(timeout)
    if ended:
        # (An attempt that could not import its function says nothing of its duration.)
        worker.claims.observe(
            (record, attempt.duration) for record, attempt in ended if not attempt.unimportable
        )
        reporter.buffer(ended)
        if worker.flush_interval <= 0:
            reporter.flush()
    reporter.fire_durable()
    worker.leases.check_timeouts()
    for token in worker.leases.doomed():
        killed = executor.kill(token)
        if killed is not None:
            reporter.finish(killed, AttemptResult(status="failed"))


def _submit(worker: Worker, executor: Executor, claimed: Sequence[JobRecord]) -> None:
    for record, attempt in executor.submit(claimed):
        worker.reporter.finish(record, attempt)
