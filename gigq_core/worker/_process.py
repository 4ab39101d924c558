"""The process executor's loop: claims jobs for a pool of child processes, sends them
out, and collects their ends (`gigq_core.pool`); only this process touches storage."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from gigq_core.execution import AttemptResult, PermanentError, may_want_parent_results
from gigq_core.pool import ProcessPool
from gigq_core.records import ErrorInfo, JobRecord
from gigq_core.worker._params import prepare_params

if TYPE_CHECKING:
    from gigq_core.worker._supervisor import Worker

log = logging.getLogger("gigq")


class ProcessLoop:
    """Runs a worker's jobs in a pool of child processes until the worker stops."""

    def __init__(self, worker: Worker, pool: ProcessPool) -> None:
        self.worker = worker
        self.pool = pool
        #: The jobs out in the children, by token.
        self.records: dict[str, JobRecord] = {}

    def run(self) -> None:
        """Claim, dispatch, collect and report until stopped, then wait out the grace
        period; what still runs is killed by `pool.shutdown` and handed back."""
        worker, pool, reporter = self.worker, self.pool, self.worker.reporter
        stop_at: float | None = None
        claimed: list[JobRecord] = []
        while True:
            stopping = worker._stop.is_set()
            if stopping and stop_at is None:
                stop_at = worker.clock.monotonic() + worker.grace
                if pool.busy():
                    log.info(
                        "worker %s: waiting up to %g s for %d running job(s)",
                        worker.worker_id,
                        worker.grace,
                        len(pool.busy()),
                    )
            if stopping and (not pool.busy() or worker.clock.monotonic() >= (stop_at or 0)):
                return
            worker.maintenance.maybe_tick()
            if not stopping:
                worker.maintenance.maybe_sweep()
                claimed += worker._claim(len(pool.idle()) - len(claimed))
                if (
                    worker._burst
                    and not claimed
                    and not self.records
                    and not pool.busy()
                    and not reporter.has_unflushed  # a flush may release dependents
                ):
                    log.info("worker %s: nothing left to do (burst)", worker.worker_id)
                    worker.stop()
            self._dispatch(claimed)
            # Outcomes wait for company only while jobs run (their ends join the same
            # commit); with nothing running, waiting gains nothing and would hold up the
            # dependents they release.
            if reporter.has_unflushed and (reporter.flush_due() or not pool.busy()):
                reporter.flush()
                if not stopping and not claimed:
                    claimed = worker._claim(len(pool.idle()))
                    self._dispatch(claimed)
            # The watcher only watches while a child is free to take new work: while every
            # child is busy, finished attempts wake the loop through their pipes anyway.
            if pool.idle() and not stopping:
                worker._idle.set()
            else:
                worker._idle.clear()
            timeout = self._timeout(bool(claimed))
            claimed = []
            self._collect(timeout)
            reporter.fire_durable()
            worker.leases.check_timeouts()
            self._kill_doomed()

    def _timeout(self, claimed: bool) -> float:
        """How long the next poll may wait."""
        if claimed:
            timeout = 0.0  # every free child got a job: more may be ready
        elif self.pool.busy():
            timeout = 0.1
        else:
            timeout = self.worker._idle_timeout()
        return self.worker.reporter.flush_wait(timeout)

    def _collect(self, timeout: float) -> None:
        """Wait up to `timeout` for the children, and buffer the attempts that ended."""
        worker = self.worker
        ended: list[tuple[JobRecord, AttemptResult]] = []
        for _, (kind, token, payload) in self.pool.poll(timeout, [worker._wake_r]):
            found = self.records.pop(token, None) if token else None
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
            worker.reporter.buffer(ended)
            if worker.flush_interval <= 0:
                worker.reporter.flush()
        if self.pool.woken:
            worker._drain_wake()

    def _kill_doomed(self) -> None:
        """Kill the children of attempts asked to stop, and report those attempts."""
        for token in self.worker.leases.doomed():
            if token in self.records:
                self.pool.kill(token)
                self.worker.reporter.finish(self.records.pop(token), AttemptResult(status="failed"))

    def _dispatch(self, claimed: list[JobRecord]) -> None:
        """Send claimed jobs to idle children."""
        worker, pool = self.worker, self.pool
        for child, record in zip(pool.idle(), claimed, strict=False):
            assert record.token is not None
            self.records[record.token] = record
            if not may_want_parent_results(record):
                # The child decodes the params itself, off the supervisor's path.
                pool.dispatch(child, record, record.params)
                continue
            try:
                params = prepare_params(record, worker.serializer, worker.storage, worker.settings)
            except PermanentError as err:  # parent results over their limit, as inline
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
                pool.dispatch(child, record, params)
                continue
            worker.reporter.finish(record, attempt)
            self.records.pop(record.token, None)
