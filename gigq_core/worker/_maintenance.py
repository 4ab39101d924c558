"""Maintenance: a worker's rescue sweeps, retention clean-ups and ticks."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta

from gigq_core.errors import GigQError
from gigq_core.plugins import Hooks
from gigq_core.ports import Clock, Storage
from gigq_core.queue import JobQueue
from gigq_core.records import Transition
from gigq_core.worker._leases import LeaseTable
from gigq_core.worker._reporter import Reporter

log = logging.getLogger("gigq")

#: What the `retention` setting removes; failed and timed-out jobs stay for inspection.
RETAINED_STATUSES = ("completed", "cancelled")
#: Seconds between retention clean-ups of one worker.
_PRUNE_INTERVAL = 60.0


class Maintenance:
    """Rescues dead workers' jobs, prunes old finished jobs, and fires the tick hook, each
    at its own interval."""

    def __init__(
        self,
        *,
        worker_id: str,
        queue: JobQueue,
        storage: Storage,
        clock: Clock,
        hooks: Hooks,
        leases: LeaseTable,
        reporter: Reporter,
        sweep_interval: float,
        retention: float,
        beat: Callable[[], None],
        is_registered: Callable[[], bool],
    ) -> None:
        self.worker_id = worker_id
        self.queue = queue
        self.storage = storage
        self.clock = clock
        self.hooks = hooks
        self.leases = leases
        self.reporter = reporter
        self.sweep_interval = sweep_interval
        self.retention = retention
        self._beat = beat
        self._is_registered = is_registered
        self._last_sweep = float("-inf")
        self._last_prune = float("-inf")
        self._last_tick = float("-inf")

    def maybe_sweep(self) -> None:
        """Rescue and prune, each when its interval has passed."""
        mono = self.clock.monotonic()
        if mono - self._last_sweep >= self.sweep_interval:
            self._last_sweep = mono
            self.rescue()
        retention = self.retention
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

    def maybe_tick(self) -> None:
        """Fire the tick hook, at most once a second."""
        mono = self.clock.monotonic()
        if mono - self._last_tick >= 1.0:
            self._last_tick = mono
            self.hooks.worker_tick(self.worker_id, self.clock.now(), self.queue)

    def _dead_neighbours(self) -> list[str]:
        """Registered workers of this host whose process is gone (rescued at once, D3)."""
        return [
            info.id
            for info in self.storage.list_workers()
            if info.id != self.worker_id and info.process_gone()
        ]

    def rescue(self) -> list[Transition]:
        """Return the jobs of dead workers to pending now; fires their hooks."""
        if self.leases and self._is_registered():
            # Renew our own leases first: a sweep must never rescue this worker's live jobs
            # because its heartbeat thread happened to be waiting for the database.
            with contextlib.suppress(GigQError):
                self._beat()
        try:
            transitions = self.storage.rescue(self.clock.now(), self._dead_neighbours())
        except GigQError:
            log.exception("rescue sweep of worker %s failed", self.worker_id)
            return []
        self.reporter.rescued(transitions)
        return transitions
