"""The worker's helper threads: the heartbeat and the storage watcher."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from gigq_core.errors import GigQError

if TYPE_CHECKING:
    from gigq_core.worker._supervisor import Worker

log = logging.getLogger("gigq")


class Heartbeat(threading.Thread):
    """Renews leases and checks inline timeouts, off the job's thread."""

    def __init__(self, worker: Worker) -> None:
        super().__init__(name="gigq-heartbeat", daemon=True)
        self.worker = worker
        self.done = threading.Event()

    def run(self) -> None:
        worker = self.worker
        next_beat = worker.clock.monotonic() + worker.heartbeat_interval
        while not self.done.wait(0.1):
            if worker.leases.check_timeouts():
                worker.wakeup.wake()
            if worker.clock.monotonic() >= next_beat:
                next_beat = worker.clock.monotonic() + worker.heartbeat_interval
                try:
                    worker._beat_now()
                except GigQError:
                    log.exception("heartbeat of worker %s failed", worker.worker_id)

    def stop(self) -> None:
        """End the thread (and wait for it, unless called from it)."""
        self.done.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout=5)


class Watcher(threading.Thread):
    """Wakes the loop when the storage changes (a submit, a finish elsewhere)."""

    def __init__(self, worker: Worker) -> None:
        super().__init__(name="gigq-watcher", daemon=True)
        self.worker = worker
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            if not self.worker._idle.wait(0.25):
                continue
            try:
                changed = self.worker.watch_storage.wait_for_work(0.25)
            except GigQError:
                changed = False
                self.done.wait(0.5)
            if changed and not self.done.is_set():
                self.worker.wakeup.wake()

    def stop(self) -> None:
        """End the thread and wait for it."""
        self.done.set()
        if self.is_alive():
            self.join(timeout=5)
