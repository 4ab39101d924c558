"""The syncer thread: waits for the disk off the worker's loop (group commit)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from gigq_core.errors import GigQError
from gigq_core.execution import AttemptResult
from gigq_core.ports import DeferredFinish
from gigq_core.records import JobRecord, Outcome, Transition

log = logging.getLogger("gigq")

#: An ended attempt and its decided outcome (with the retry delay), waiting for a commit.
Report = tuple[JobRecord, AttemptResult, Outcome, float | None]
#: A report and its committed transition (None: fenced), waiting for the disk.
Committed = tuple[JobRecord, AttemptResult, Outcome, float | None, Transition | None]


class Syncer(threading.Thread):
    """Waits for the disk off the worker's loop (group commit without holding the lock).

    The loop commits outcomes with `finish_deferred` and hands them here; this thread
    calls `sync()` (one fsync for everything handed over meanwhile), then wakes the loop,
    which fires their hooks. A crash before that loses no committed outcome; only power
    loss can, and then the jobs run again (their hooks had not fired).
    """

    def __init__(self, worker_id: str, storage: DeferredFinish, wake: Callable[[], None]) -> None:
        super().__init__(name="gigq-sync", daemon=True)
        self.worker_id = worker_id
        #: The worker's storage, as the capability the syncer uses.
        self.storage = storage
        self._wake = wake
        self._cond = threading.Condition()
        self._waiting: list[Committed] = []
        self._durable: list[Committed] = []
        self._done = False

    def submit(self, committed: list[Committed]) -> bool:
        """Hand over outcomes to make durable; False once stopping (the caller then syncs
        and reports them itself)."""
        with self._cond:
            if self._done:
                return False
            self._waiting.extend(committed)
            self._cond.notify()
            return True

    def take(self) -> list[Committed]:
        """The outcomes found durable since the last call."""
        with self._cond:
            durable, self._durable = self._durable, []
        return durable

    def run(self) -> None:
        storage = self.storage
        while True:
            with self._cond:
                while not self._waiting and not self._done:
                    self._cond.wait()
                if not self._waiting:
                    return
                batch, self._waiting = self._waiting, []
            try:
                storage.sync()
            except GigQError:
                # The rows are committed; only their durability against power loss is in
                # doubt. Say so, and go on.
                log.exception("worker %s: waiting for the disk failed", self.worker_id)
            with self._cond:
                self._durable.extend(batch)
            self._wake()

    def stop(self) -> None:
        """Make durable what was handed over, then end the thread."""
        with self._cond:
            self._done = True
            self._cond.notify()
        if self.is_alive():
            self.join(timeout=30)
