"""The process executor: a pool of long-lived child processes (`gigq_core.pool`); only
the supervisor touches storage, and a hung or crashing job is killed with its whole
process group without taking the worker down."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gigq_core.execution import AttemptResult, PermanentError, may_want_parent_results
from gigq_core.pool import ProcessPool
from gigq_core.records import ErrorInfo, JobRecord
from gigq_core.worker._loop import Ended
from gigq_core.worker._params import prepare_params

if TYPE_CHECKING:
    from gigq_core.worker._supervisor import Worker


class ProcessExecutor:
    """Runs a worker's attempts in a pool of child processes (an `Executor`)."""

    @classmethod
    def open(cls, worker: Worker) -> ProcessExecutor:
        """Fork the worker's children (before any other thread of the worker exists)."""
        settings = worker.settings
        pool = ProcessPool(
            worker.concurrency,
            worker.serializer,
            settings.max_payload,
            settings.allowed_modules,
            settings.max_jobs_per_child,
            settings.max_child_memory,
            plugin_settings=tuple(worker._declared),
            kill_leftovers=bool(settings.kill_leftovers),
            leftover_grace=float(settings.leftover_grace),
        )
        # What the process holds now goes out of the collector's way (gc.freeze: fewer
        # full collections here, no copy-on-write of the whole heap in the children);
        # `shutdown` unfreezes it.
        gc.freeze()
        pool.start()
        return cls(worker, pool)

    def __init__(self, worker: Worker, pool: ProcessPool) -> None:
        self.worker = worker
        self.pool = pool
        #: The attempts out in the children, by token.
        self.records: dict[str, JobRecord] = {}

    def capacity(self) -> int:
        """Idle children."""
        return len(self.pool.idle())

    def running(self) -> int:
        """Busy children."""
        return len(self.pool.busy())

    def submit(self, records: Sequence[JobRecord]) -> list[Ended]:
        """Send claimed jobs to idle children."""
        worker, pool = self.worker, self.pool
        # A reload asked for since the last poll: no job goes to a child with the old code.
        pool.renew_stale()
        failed: list[Ended] = []
        for child, record in zip(pool.idle(), records, strict=False):
            assert record.token is not None
            if not may_want_parent_results(record):
                # The child decodes the params itself, off the supervisor's path.
                self.records[record.token] = record
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
                self.records[record.token] = record
                pool.dispatch(child, record, params)
                continue
            failed.append((record, attempt))
        return failed

    def poll(self, timeout: float) -> list[Ended]:
        """Wait for the children (or the worker's wake-up pipe); the attempts that ended."""
        ended: list[Ended] = []
        for _, (kind, token, payload) in self.pool.poll(timeout, [self.worker.wakeup.fd]):
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
        if self.pool.woken:
            self.worker.wakeup.drain()
        self.pool.renew_stale()
        return ended

    def kill(self, token: str) -> JobRecord | None:
        """Kill the child running the attempt, with its process group."""
        if token not in self.records:
            return None
        self.pool.kill(token)
        return self.records.pop(token)

    def shutdown(self) -> None:
        """Kill what still runs and end the children."""
        try:
            self.pool.shutdown()
        finally:
            gc.unfreeze()
