"""The lease table: the attempts a worker holds, their heartbeats, timeouts and stops."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from gigq_core.context import JobContext
from gigq_core.ports import Clock, Storage
from gigq_core.records import JobRecord


class Held:
    """An attempt this worker holds."""

    def __init__(self, record: JobRecord, context: JobContext, started: float) -> None:
        self.record = record
        self.context = context
        self.started = started
        #: Why the job was asked to stop: "timeout", "cancelled", "lost" or None.
        self.stop_reason: str | None = None


class LeaseTable:
    """The attempts a worker holds, by token (one job may be held twice for a moment: a
    rescued attempt still running here and its new attempt)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        #: Guards the table, and the reporter's buffer of outcomes (one lock, so a heartbeat
        #: sees every job still held, running or waiting for its commit).
        self.lock = threading.Lock()
        self._held: dict[str, Held] = {}
        #: Jobs claimed ahead of a free slot and not started ("reserved"), by token, in
        #: claim order; their leases are renewed with the others'.
        self._reserved: dict[str, JobRecord] = {}

    def __bool__(self) -> bool:
        return bool(self._held) or bool(self._reserved)

    # -- reserved jobs ---------------------------------------------------------------------

    def reserve(self, records: Iterable[JobRecord]) -> None:
        """Hold reserved jobs (not started) until they start or are handed back."""
        with self.lock:
            for record in records:
                assert record.token is not None
                self._reserved[record.token] = record

    def has_reserved(self) -> bool:
        """Whether any job is reserved (no copy of them, on every claim's path)."""
        return bool(self._reserved)

    def reserved(self) -> list[JobRecord]:
        """The reserved jobs, in claim order."""
        with self.lock:
            return list(self._reserved.values())

    def take_reserved(self, limit: int) -> list[JobRecord]:
        """Take up to `limit` reserved jobs to start, first claimed first."""
        with self.lock:
            taken = list(self._reserved.values())[:limit]
            for record in taken:
                del self._reserved[record.token or ""]
        return taken

    def put_back(self, records: Iterable[JobRecord]) -> None:
        """Hold again reserved jobs taken but not started (a failed start), first."""
        with self.lock:
            rest, self._reserved = self._reserved, {r.token or "": r for r in records}
            self._reserved.update(rest)

    def release_reserved(self) -> list[JobRecord]:
        """Stop holding every reserved job; returns them."""
        with self.lock:
            left = list(self._reserved.values())
            self._reserved.clear()
        return left

    def hold(self, record: JobRecord, context: JobContext) -> None:
        """Hold a newly claimed attempt; an older attempt of the same job is lost."""
        assert record.token is not None
        with self.lock:
            for older in self._held.values():
                if older.record.id == record.id and older.stop_reason is None:
                    # Claimed again: the older attempt was rescued from under us.
                    older.stop_reason = "lost"
                    older.context.request_stop()
            self._held[record.token] = Held(record, context, self.clock.monotonic())

    def get(self, token: str) -> Held:
        """The held attempt of `token` (KeyError if none)."""
        return self._held[token]

    def release(self, token: str) -> Held | None:
        """Stop holding an attempt; returns it, or None if it was not held."""
        with self.lock:
            return self._held.pop(token, None)

    def release_all(self) -> list[JobRecord]:
        """Stop holding every attempt; returns their records."""
        with self.lock:
            left = [r.record for r in self._held.values()]
            self._held.clear()
        return left

    def busy_by_queue(self) -> dict[str, int]:
        """How many attempts of each queue are held."""
        busy: dict[str, int] = {}
        with self.lock:
            for held in self._held.values():
                busy[held.record.queue] = busy.get(held.record.queue, 0) + 1
        return busy

    def renew(
        self,
        storage: Storage,
        worker_id: str,
        lease: float,
        *,
        pending: Callable[[], Iterable[JobRecord]],
        registered: bool,
    ) -> bool:
        """Renew the leases of every job held, and of the ended attempts in `pending`
        (called under the lock: their outcomes wait for a commit and still hold the jobs);
        marks the attempts whose jobs were lost or cancelled. True if any was marked.

        Does nothing when nothing is held and the worker is not registered (process_one()
        between jobs: no lease to renew)."""
        with self.lock:
            # The newest attempt of each job is the one that may still hold it.
            held = {r.id: token for token, r in self._reserved.items()}
            held.update({r.record.id: token for token, r in self._held.items()})
            for record in pending():
                held.setdefault(record.id, record.token or "")
        if not held and not registered:
            return False
        reply = storage.heartbeat(worker_id, held, self.clock.now(), lease)
        marks = [(held[i], "lost") for i in reply.lost] + [
            (held[i], "cancelled") for i in reply.cancel_requested
        ]
        with self.lock:
            for token, reason in marks:
                # A reserved job lost or cancelled (it ends at once) is simply dropped.
                self._reserved.pop(token, None)
                running = self._held.get(token)
                if running is not None and running.stop_reason is None:
                    running.stop_reason = reason
                    running.context.request_stop()
        return bool(marks)

    def check_timeouts(self) -> list[str]:
        """Mark attempts past their timeout; returns their tokens."""
        mono = self.clock.monotonic()
        expired = []
        with self.lock:
            for token, running in self._held.items():
                timeout = running.record.timeout
                if (
                    timeout is not None
                    and running.stop_reason is None
                    and (mono - running.started > timeout)
                ):
                    running.stop_reason = "timeout"
                    running.context.request_stop()
                    expired.append(token)
        return expired

    def doomed(self) -> list[str]:
        """The tokens of attempts asked to stop (timed out, cancelled or lost)."""
        with self.lock:
            return [token for token, r in self._held.items() if r.stop_reason]

    def stop_all(self) -> None:
        """Ask every held attempt to stop (inline jobs, at the end of the grace period)."""
        with self.lock:
            for running in self._held.values():
                running.context.request_stop()
