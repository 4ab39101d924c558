"""`Worker`, the supervisor: registration, signals, start and stop; it drives the loop
over an executor and owns the worker's units (claims, leases, reporter, maintenance).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from gigq_core._guards import HookRunner, bounded_hooks
from gigq_core.errors import (
    ConfigError,
    GigQError,
)
from gigq_core.limits import check_length, check_text
from gigq_core.plugins import GigQPluginManager, open_storage
from gigq_core.pool import ProcessPool
from gigq_core.ports import (
    Clock,
    IndependentHandles,
    PermissionChecked,
    Serializer,
    Storage,
)
from gigq_core.queue import JobQueue
from gigq_core.records import Transition, WorkerInfo
from gigq_core.settings import EXECUTORS, override
from gigq_core.worker._claims import Claims
from gigq_core.worker._imports import ImportBackoff
from gigq_core.worker._inline import InlineExecutor, run_inline
from gigq_core.worker._leases import LeaseTable
from gigq_core.worker._loop import Executor, run_loop
from gigq_core.worker._maintenance import Maintenance
from gigq_core.worker._prefetch import Prefetcher
from gigq_core.worker._process import ProcessExecutor
from gigq_core.worker._reporter import Reporter
from gigq_core.worker._threads import Heartbeat, Watcher
from gigq_core.worker._wakeup import Wakeup

log = logging.getLogger("gigq")


class Worker:
    """A worker over one queue: `start()` runs until `stop()` or SIGTERM/SIGINT."""

    #: The class of the queue a worker opens when given a target rather than a JobQueue.
    queue_class: type[JobQueue] = JobQueue

    def __init__(
        self,
        target: Any = None,
        worker_id: str | None = None,
        polling_interval: float | None = None,
        concurrency: int | None = None,
        queues: Sequence[str] | str | None = None,
        lease: float | None = None,
        heartbeat: float | None = None,
        grace: float | None = None,
        executor: str | None = None,
        *,
        queue_concurrency: dict[str, int] | None = None,
        plugin_manager: GigQPluginManager | None = None,
        clock: Clock | None = None,
        serializer: Serializer | None = None,
        **settings: Any,
    ) -> None:
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise ValueError(f"concurrency must be an integer of at least 1, got {concurrency!r}")
        overrides = {
            "polling_interval": polling_interval,
            "concurrency": concurrency,
            "lease": lease,
            "heartbeat": heartbeat,
            "grace": grace,
            "executor": executor,
            **settings,
        }
        #: Whether close() closes the queue (not when the caller passed its own JobQueue).
        self._owns_queue = not isinstance(target, JobQueue)
        if isinstance(target, JobQueue):
            self.queue = target
        else:
            self.queue = self.queue_class(
                target,
                plugin_manager=plugin_manager,
                clock=clock,
                serializer=serializer,
                **overrides,
            )
        #: The settings plugins declare (a storage's own), checked with the worker's overrides.
        self._declared = self.queue.hooks.settings()
        self.settings = override(self.queue.settings, overrides, self._declared)
        self.storage = self.queue.storage
        #: Heartbeats go through their own connection where the storage has connections,
        #: so a renewal never queues behind this process's own slow write.
        self.heartbeat_storage = self.storage
        self.watch_storage = self.storage
        self.hooks = self.queue.hooks
        self.clock = self.queue.clock
        self.serializer = self.queue.serializer
        self.concurrency = int(self.settings.concurrency)
        self.executor = str(self.settings.executor)
        self.polling_interval = float(self.settings.polling_interval)
        self.lease = float(self.settings.lease)
        self.heartbeat_interval = float(self.settings.heartbeat)
        self.sweep_interval = float(self.settings.sweep_interval)
        self.grace = float(self.settings.grace)
        self.hook_timeout = float(self.settings.hook_timeout)
        self.flush_interval = float(self.settings.flush_interval)
        if isinstance(queues, str):
            queues = [queues]
        self.queues: tuple[str, ...] | None = tuple(queues) if queues else None
        for name in self.queues or ():
            check_text(name, "the name of a queue to serve")
        limits = dict(queue_concurrency or {})
        for name, cap in limits.items():
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
                raise ValueError(f"queue_concurrency[{name!r}] must be an integer of at least 1")
            if self.queues is not None and name not in self.queues:
                raise ValueError(f"queue_concurrency names queue {name!r}, which is not served")
        #: Most jobs of one queue running at once in this worker.
        self.queue_limits: dict[str, int] = limits
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        check_length(
            self.worker_id, self.settings.max_name_length, "the worker id", "max_name_length"
        )
        self._check_permissions()
        self._stop = threading.Event()
        #: When stop() was first called (the clock's monotonic time): the grace period
        #: runs from then.
        self._stop_asked: float | None = None
        #: Set while the loop could start another job now (a free child or thread).
        self._idle = threading.Event()
        self._pool: ProcessPool | None = None
        self._burst = False
        #: Whether start()'s inline loop runs (its job threads leave outcomes to it).
        self._looping = False
        self._signals = 0
        #: The signal that asked the worker to stop, if one did (what its log names).
        self._stop_signal: int | None = None
        #: Wakes the loop from other threads (open while start() runs).
        self.wakeup = Wakeup()
        self._beat_thread: Heartbeat | None = None
        #: The attempts this worker holds.
        self.leases = LeaseTable(self.clock)
        #: The modules this worker cannot import, whose jobs it hands back and skips.
        self.imports = ImportBackoff(self.worker_id, self.storage, self.clock)
        self.reporter = Reporter(
            worker_id=self.worker_id,
            storage=self.storage,
            leases=self.leases,
            clock=self.clock,
            hooks=self.hooks,
            serializer=self.serializer,
            strategies=self.queue._strategies,
            max_error_length=self.settings.max_error_length,
            flush_interval=self.flush_interval,
            wake=self.wakeup.wake,
            retry_log_level=logging.getLevelName(self.settings.retry_log_level.upper()),
            imports=self.imports,
        )
        self.claims = Claims(
            worker_id=self.worker_id,
            storage=self.storage,
            clock=self.clock,
            leases=self.leases,
            reporter=self.reporter,
            lease=self.lease,
            queues=self.queues,
            queue_limits=self.queue_limits,
            polling_interval=self.polling_interval,
            stopped=self._stop,
            beat=self._beat_now,
            prefetcher=Prefetcher(
                float(self.settings.prefetch_window), int(self.settings.prefetch_max)
            ),
            imports=self.imports,
        )
        self.maintenance = Maintenance(
            worker_id=self.worker_id,
            queue=self.queue,
            storage=self.storage,
            clock=self.clock,
            hooks=self.hooks,
            leases=self.leases,
            reporter=self.reporter,
            sweep_interval=self.sweep_interval,
            retention=float(self.settings.retention),
            beat=self._beat_now,
            is_registered=lambda: self.wakeup.is_open,
        )

    def _check_permissions(self) -> None:
        """Refuse a database others may write (docs/guarantees.md D9), unless allowed."""
        if (
            isinstance(self.storage, PermissionChecked)
            and not self.settings.allow_insecure_permissions
        ):
            message = self.storage.permission_problem()
            if message:
                raise ConfigError(f"refusing to run jobs: {message}")

    def process_one(self) -> bool:
        """Claim at most one ready job and run it in this thread; True if one was claimed."""
        self._maybe_sweep()
        claimed = self.claims.claim(1, ahead=False)  # no loop would start what it reserved
        if not claimed:
            return False
        if self._beat_thread is None or not self._beat_thread.is_alive():
            # One heartbeat thread for all process_one() calls; close() stops it.
            self._beat_thread = Heartbeat(self)
            self._beat_thread.start()
        run_inline(self, claimed[0])
        return True

    def _beat_now(self) -> None:
        """Renew the leases of the jobs held (ended attempts waiting for the flush still
        hold their jobs until it commits); wake the loop when some were lost or cancelled."""
        if self.leases.renew(
            self.heartbeat_storage,
            self.worker_id,
            self.lease,
            pending=self.reporter.unflushed_records,
            registered=self.wakeup.is_open,
        ):
            self.wakeup.wake()

    def _maybe_sweep(self) -> None:
        """Rescue and prune when their intervals have passed."""
        self.maintenance.maybe_sweep()

    def _second_storage(self) -> Storage:
        """Another handle on the same storage (its own connection) where the adapter says
        that opening its URL again gives one (the `independent_handles` capability)."""
        if not (isinstance(self.storage, IndependentHandles) and self.storage.independent_handles):
            return self.storage
        try:
            return open_storage(self.storage.url, self.settings.as_dict(), self.queue.pm)
        except GigQError:
            return self.storage

    def rescue(self) -> list[Transition]:
        """Return the jobs of dead workers to pending now; fires their hooks."""
        return self.maintenance.rescue()

    # -- the loop --------------------------------------------------------------------------

    def start(self, burst: bool = False) -> None:
        """Run until `stop()` or SIGTERM/SIGINT; then let running jobs finish within the
        grace period, hand back what is left, and return.

        `burst=True` also returns once nothing is running and no job is ready (jobs
        scheduled for later are left for another worker), like RQ's burst mode.

        The lifecycle hooks fired meanwhile from this thread run on a helper thread, each
        waited for at most `hook_timeout` seconds and never past the grace period (see
        `HookRunner`): a plugin that hangs never holds the worker.
        """
        with bounded_hooks(HookRunner(self.hook_timeout, self.grace_left)):
            self._run(burst)

    def grace_left(self) -> float | None:
        """Seconds left of a stopping worker's grace period (negative once it is over), or
        None while the worker has not been asked to stop."""
        asked = self._stop_asked
        if asked is None:
            return None
        return asked + self.grace - self.clock.monotonic()

    def _run(self, burst: bool) -> None:
        self._burst = burst
        self._stop.clear()
        self._stop_asked = None
        self._signals = 0
        self._stop_signal = None
        self.wakeup.open()
        restore = self._install_signals()
        self._register()
        beat = Heartbeat(self)
        watcher = Watcher(self)
        self.heartbeat_storage = self._second_storage()
        # The watcher waits on a handle of its own too: its checks never queue behind (or
        # hold up) the loop's claims and reports.
        self.watch_storage = self._second_storage()
        try:
            executor = self._open_executor()
            try:
                # The threads start after the process executor forked its children.
                beat.start()
                watcher.start()
                self.reporter.start_syncer()
                run_loop(self, executor)
            finally:
                executor.shutdown()
                self._pool = None
                self.reporter.stop_syncer()
        finally:
            self.reporter.stop_syncer()
            self.claims.hand_back_reserved()
            self.reporter.flush()
            self.reporter.hand_back()
            watcher.stop()
            beat.stop()
            self.storage.deregister_worker(self.worker_id, self.clock.now())
            self.imports.clear()
            for extra in {id(s): s for s in (self.heartbeat_storage, self.watch_storage)}.values():
                if extra is not self.storage:
                    extra.close()
            self.heartbeat_storage = self.watch_storage = self.storage
            self.wakeup.close()
            for sig, handler in restore.items():
                signal.signal(sig, handler)
            log.info("worker %s stopped", self.worker_id)
            self.hooks.worker_stopped(self.worker_id)

    def _register(self) -> None:
        """Register the worker in the storage, log its start, and fire its hook."""
        now = self.clock.now()
        self.storage.register_worker(
            WorkerInfo(
                id=self.worker_id,
                host=socket.gethostname(),
                pid=os.getpid(),
                queues=self.queues or (),
                concurrency=self.concurrency,
                started_at=now,
                last_heartbeat=now,
            )
        )
        log.info(
            "worker %s started (%s executor, queues: %s, concurrency %d) on %s",
            self.worker_id,
            self.executor,
            ", ".join(self.queues) if self.queues else "all",
            self.concurrency,
            _where(self.storage),
        )
        if not self.settings.allowed_modules:
            log.warning(
                "worker %s: allowed_modules is not set, so any job in this store may run any "
                "function importable here outside the standard library and the refused "
                "packages; whoever can write the store can run code as this user. Set "
                "allowed_modules (e.g. GIGQ_ALLOWED_MODULES='myapp.tasks,myapp.jobs.*')",
                self.worker_id,
            )
        self.hooks.worker_started(self.worker_id)

    def _open_executor(self) -> Executor:
        """The executor of the `executor` setting (a process pool forks its children here,
        before any other thread of ours exists)."""
        if self.executor != "process":
            return InlineExecutor(self)
        executor = ProcessExecutor.open(self)
        self._pool = executor.pool
        return executor

    def stop(self) -> None:
        """Ask `start()` to return: claim nothing more, finish or hand back running jobs.
        Returns at once."""
        if self._stop_asked is None:
            self._stop_asked = self.clock.monotonic()
        self._stop.set()
        self.wakeup.wake()

    def reload(self, folders: Sequence[str] = ()) -> None:
        """Have the job processes start again with the code as it is on disk now (`gigq
        worker --reload`): idle ones at once, busy ones when their job ends. Modules loaded
        from under `folders` are forgotten by this process first, so the new ones import
        them again. Safe from any thread; nothing happens with the inline executor, or
        while `start()` does not run."""
        pool = self._pool
        if pool is not None:
            pool.renew(folders)
            self.wakeup.wake()

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals += 1
        if self._signals > 1:
            # Second signal: leave at once; live workers rescue the jobs after the lease.
            # The jobs' processes go too, so no job runs on unsupervised.
            log.warning("worker %s: second signal, exiting now", self.worker_id)
            if self._pool is not None:
                self._pool.kill_all()
            os._exit(1)
        log.info(
            "worker %s: %s received, shutting down", self.worker_id, signal.Signals(signum).name
        )
        self._stop_signal = signum
        self.stop()

    def second_signal_hint(self) -> str:
        """How to stop at once, for the log line of a worker a signal is stopping ("" when
        no signal asked it to stop)."""
        if self._stop_signal == signal.SIGINT:
            return "press Ctrl-C again to stop at once"
        if self._stop_signal == signal.SIGTERM:
            return "a second SIGTERM or Ctrl-C stops it at once"
        return ""

    def close(self) -> None:
        """Stop the heartbeat thread of process_one(), and close the worker's queue unless
        the caller passed it in (then it stays the caller's to close)."""
        if self._beat_thread is not None:
            self._beat_thread.stop()
            self._beat_thread = None
        self.imports.clear()  # what process_one() published
        if self._owns_queue:
            self.queue.close()

    def __repr__(self) -> str:
        return f"<Worker {self.worker_id} {self.queue.target}>"


def _where(storage: Any) -> str:
    """The store a worker serves, for its start line: a SQLite file's absolute path (a
    worker started in the wrong folder says so at once), else the storage's URL (without
    its password)."""
    path = getattr(storage, "path", None)
    return os.path.abspath(path) if isinstance(path, str) else str(storage.url)


__all__ = ["EXECUTORS", "Worker"]
