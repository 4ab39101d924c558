"""`Worker`: claims jobs, runs them, reports their outcomes, heartbeats and rescues.

Two executors:
- "process" (the default for `start()`): a supervisor (this process) and a pool of
  long-lived children (`gigq_core.pool`); only the supervisor touches storage, and a hung or
  crashing job is killed with its whole process group without taking the worker down.
- "inline": jobs run in this process (threads when `concurrency > 1`), for tests and
  embedding. Timeouts and cancellation are cooperative there (`current_job().is_cancelled()`);
  an attempt that overran is recorded as `timeout` when it returns. `process_one()` always
  runs inline.

The package's units: the supervisor (`Worker`: registration, signals, start and stop),
claiming (`_claims`), one loop driving either executor through the `Executor` protocol
(`_loop`, `_process`, `_inline`), the lease table (`_leases`), the reporter (`_reporter`: group
commit, and the only place committed transitions become hook calls), maintenance
(`_maintenance`: rescue, retention, ticks), the heartbeat and watcher threads
(`_threads`), and the loop's wake-up pipe (`_wakeup`).
"""

from __future__ import annotations

from gigq_core.settings import EXECUTORS
from gigq_core.worker._maintenance import RETAINED_STATUSES
from gigq_core.worker._reporter import FLUSH_MAX_JOBS
from gigq_core.worker._supervisor import Worker

__all__ = ["EXECUTORS", "FLUSH_MAX_JOBS", "RETAINED_STATUSES", "Worker"]
