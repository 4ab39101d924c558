"""Claiming: a worker takes ready jobs within its per-queue limits, holds them, and backs
off while the storage fails."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence

from gigq_core.context import JobContext
from gigq_core.errors import (
    CorruptDatabaseError,
    NotADatabaseError,
    PermissionDeniedError,
    ReadOnlyError,
    SchemaVersionError,
    StorageError,
)
from gigq_core.ports import Clock, Prefetch, Storage
from gigq_core.records import JobFilter, JobRecord, JobStatus
from gigq_core.worker._imports import ImportBackoff
from gigq_core.worker._leases import LeaseTable
from gigq_core.worker._prefetch import Prefetcher
from gigq_core.worker._reporter import Reporter

log = logging.getLogger("gigq")


class Claims:
    """Claims a worker's jobs: within the per-queue limits, held in the lease table, their
    starts reported; and says how long an idle loop may wait for the next due job."""

    def __init__(
        self,
        *,
        worker_id: str,
        storage: Storage,
        clock: Clock,
        leases: LeaseTable,
        reporter: Reporter,
        lease: float,
        queues: tuple[str, ...] | None,
        queue_limits: dict[str, int],
        polling_interval: float,
        stopped: threading.Event,
        beat: Callable[[], None],
        prefetcher: Prefetcher | None = None,
        imports: ImportBackoff | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.storage = storage
        self.clock = clock
        self.leases = leases
        self.reporter = reporter
        self.lease = lease
        self.queues = queues
        self.queue_limits = queue_limits
        self.polling_interval = polling_interval
        self._stopped = stopped
        self._beat = beat
        #: The storage as one that can reserve jobs (checked once: a protocol check is slow).
        self._ahead: Prefetch | None = storage if isinstance(storage, Prefetch) else None
        #: Reserves jobs beyond the free slots (None: never).
        self.prefetcher = (
            prefetcher
            if prefetcher is not None
            and prefetcher.enabled
            and self._ahead is not None
            and not queue_limits
            else None
        )
        #: Storage failures in a row (for the back-off).
        self._trouble = 0
        #: The modules this worker cannot import, whose jobs it does not claim for now.
        self.imports = imports

    def observe(self, ended: Iterable[tuple[JobRecord, float]]) -> None:
        """Learn how long jobs ran (attempts that ended, and their durations)."""
        if self.prefetcher is not None:
            self.prefetcher.observe((record.function, seconds) for record, seconds in ended)

    def claim(self, limit: int, *, ahead: bool = True) -> list[JobRecord]:
        """Start up to `limit` jobs: reserved ones first, then claimed ones, within the
        per-queue limits (`ahead`: reserving more while claiming, as the prefetcher
        allows); hold them and fire their start hooks."""
        if limit <= 0:
            return []
        try:
            claimed = self._start_reserved(limit)
            if len(claimed) < limit and not self.leases.has_reserved():
                claimed += self._claim_from_storage(limit - len(claimed), ahead)
        except StorageError as err:
            self.storage_trouble(err)
            return []
        self._trouble = 0
        for record in claimed:
            context = JobContext(
                id=record.id,
                name=record.name,
                attempt=record.attempts,
                worker_id=self.worker_id,
                beat=self._beat,
            )
            self.leases.hold(record, context)
            self.reporter.started(record)
        return claimed

    def _start_reserved(self, limit: int) -> list[JobRecord]:
        """Start reserved jobs (a cheap write: it must survive a crash of this process, so
        that a rescuer counts the attempt of a job that started, and only of those)."""
        taken = self.leases.take_reserved(limit)
        if not taken:
            return []
        assert self._ahead is not None
        if self.imports is not None and self.imports.active():
            taken = self._release_blocked(taken)
            if not taken:
                return []
        try:
            started = self._ahead.start(self.worker_id, taken, self.clock.now())
        except StorageError:
            self.leases.put_back(taken)
            raise
        # A reserved job cancelled or rescued meanwhile is not started; it is dropped.
        return started

    def hand_back_reserved(self) -> None:
        """Return every reserved job to pending at once, nothing counted (stopping)."""
        left = self.leases.release_reserved()
        if not left:
            return
        assert self._ahead is not None
        try:
            released = self._ahead.release({r.id: r.token or "" for r in left}, self.clock.now())
        except StorageError as err:
            log.warning(
                "worker %s: could not hand back %d reserved job(s) (%s); they return to "
                "pending when their lease expires",
                self.worker_id,
                len(left),
                err,
            )
            return
        log.info("worker %s handed back %d reserved job(s)", self.worker_id, len(released))

    def _release_blocked(self, taken: list[JobRecord]) -> list[JobRecord]:
        """Hand back, uncounted, the reserved jobs of modules this worker cannot import
        (reserved before it found out); returns the others."""
        assert self._ahead is not None and self.imports is not None
        blocked = {r.id: r.token or "" for r in taken if self.imports.blocks(r.function)}
        if blocked:
            try:
                self._ahead.release(blocked, self.clock.now())
            except StorageError:
                self.leases.put_back(taken)
                raise
        return [r for r in taken if r.id not in blocked]

    def _claim_from_storage(self, limit: int, ahead: bool) -> list[JobRecord]:
        if self._ahead is not None and self.imports is not None and self.imports.active():
            return self._claim_around_blocked(limit)
        now = self.clock.now()
        claimed: list[JobRecord] = []
        if self.prefetcher is not None and ahead:
            count, functions = self.prefetcher.plan(())
            if count:
                assert self._ahead is not None
                claimed, reserved = self._ahead.claim_ahead(
                    self.worker_id, limit, count, now, self.lease, self.queues, functions
                )
                self.leases.reserve(reserved)
                return claimed
        return self._within_limits(
            limit,
            lambda room, queues: self.storage.claim(self.worker_id, room, now, self.lease, queues),
        )

    def _within_limits(
        self, limit: int, take: Callable[[int, Sequence[str] | None], list[JobRecord]]
    ) -> list[JobRecord]:
        """Up to `limit` jobs from `take(room, queues)`, within the per-queue limits."""
        if not self.queue_limits:
            return take(limit, self.queues)
        claimed: list[JobRecord] = []
        busy = self.leases.busy_by_queue()
        for name, cap in self.queue_limits.items():
            room = min(limit - len(claimed), cap - busy.get(name, 0))
            if room > 0:
                claimed += take(room, [name])
        others = self._unlimited_queues()
        if others != () and len(claimed) < limit:
            claimed += take(limit - len(claimed), others)
        return claimed

    def _claim_around_blocked(self, limit: int) -> list[JobRecord]:
        """Claim past the jobs of modules this worker cannot import, which stay pending for
        other workers, untouched: the ready jobs of the other functions found among the
        first CANDIDATES pending ones are reserved (a reservation counts nothing) and
        started. Jobs behind CANDIDATES pending ones of blocked modules wait for the
        back-off to end."""
        assert self._ahead is not None and self.imports is not None
        ahead = self._ahead
        pending = self.storage.list_jobs(
            JobFilter(statuses=(JobStatus.PENDING,), queues=self.queues),
            limit=CANDIDATES,
            order="priority",
        )
        functions = sorted(
            {r.function for r in pending if r.function and not self.imports.blocks(r.function)}
        )
        if not functions:
            return []
        now = self.clock.now()

        def reserve(room: int, queues: Sequence[str] | None) -> list[JobRecord]:
            return ahead.claim_ahead(self.worker_id, 0, room, now, self.lease, queues, functions)[1]

        reserved = self._within_limits(limit, reserve)
        if not reserved:
            return []
        try:
            return ahead.start(self.worker_id, reserved, now)
        except StorageError:
            self.leases.reserve(reserved)  # held (and renewed) until the next claim starts them
            raise

    def _unlimited_queues(self) -> tuple[str, ...] | None:
        """The served queues without a per-queue limit; None: any queue not limited."""
        if self.queues is None:
            # Every queue but the limited ones: name them by what the storage holds.
            names = set(self.storage.queue_counts()) - set(self.queue_limits)
            return tuple(sorted(names))
        return tuple(q for q in self.queues if q not in self.queue_limits)

    def storage_trouble(self, err: StorageError) -> None:
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
        self._stopped.wait(pause)

    def idle_timeout(self) -> float:
        """How long an idle loop may wait: the polling interval (at most a second), or
        less when a scheduled job falls due sooner."""
        wait = min(self.polling_interval, 1.0)
        now = self.clock.now()
        try:
            due = self.storage.next_due(now, self.queues)
        except StorageError as err:
            self.storage_trouble(err)
            return 0.0
        if due is not None and not (
            due <= now and self.imports is not None and self.imports.active()
        ):
            # (A job due now while some module is blocked is most likely one of its: no
            # reason to claim again at once.)
            wait = max(0.0, min(wait, (due - now).total_seconds()))
        return wait


#: Pending jobs a worker that cannot import some module looks through, in claim order, for
#: the functions it can claim.
CANDIDATES = 200
