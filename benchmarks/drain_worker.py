"""One drain process: `python -m benchmarks.drain_worker {gigq,huey} --db PATH --jobs N
[--workers W] [--barrier]`.

GigQ: one real worker, `Worker(...).start(burst=True)` with the default (process) executor.
Several of these processes drain the same database in parallel; each stops after `N` of its
own jobs succeeded, or when nothing is left to claim (burst). With `--barrier` it prints
`ready` from its `gigq_worker_started` hook and waits for a line on stdin, so the parent can
let parallel workers start together. huey: its consumer with `W` worker processes, stopped
once `N` tasks completed.

The clock runs from the first job's start (right after its claim) to the last job's
completion (after its outcome is committed), so imports and start-up do not count. Prints one
JSON line: `{"first": t, "last": t, "completed": n, "wall": s, "error": null}`; `first` and
`last` are `time.monotonic()` readings (one system-wide clock on Linux and macOS), so the
parent can combine several processes. Exit 1 if a job failed or the drain fell short.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import POLLING_INTERVAL

#: huey's workers are processes (its `worker_type="process"`, which forks), as GigQ's are.
HUEY_WORKER_TYPE = "process"


class _Tally:
    """First start, last completion, count and failures; shared across forked processes
    (huey's process workers) as well as threads, through `multiprocessing` shared memory."""

    def __init__(self, n: int, own_jobs_only: bool = False) -> None:
        ctx = multiprocessing.get_context("fork")
        self.n = n
        #: Whether reaching `n` is required (False when other processes share the work).
        self.own_jobs_only = own_jobs_only
        self._lock = ctx.Lock()
        self._first = ctx.RawValue("d", -1.0)
        self._last = ctx.RawValue("d", -1.0)
        self._completed = ctx.RawValue("q", 0)
        self._errors = ctx.SimpleQueue()
        self.finished = ctx.Event()

    @property
    def completed(self) -> int:
        return int(self._completed.value)

    def started(self) -> None:
        if self._first.value < 0:
            now = time.monotonic()
            with self._lock:
                if self._first.value < 0:
                    self._first.value = now

    def succeeded(self) -> None:
        now = time.monotonic()
        with self._lock:
            self._completed.value += 1
            self._last.value = now
            done = self._completed.value >= self.n
        if done:
            self.finished.set()

    def failed(self, message: str) -> None:
        self._errors.put(message)
        self.finished.set()

    def report(self, wall: float) -> dict[str, Any]:
        errors: list[str] = []
        while not self._errors.empty():
            errors.append(self._errors.get())
        error = "; ".join(errors[:3]) or None
        if error is None and self.completed < self.n and not self.own_jobs_only:
            error = f"only {self.completed} of {self.n} jobs completed before the timeout"
        return {
            "first": self._first.value if self.completed else None,
            "last": self._last.value if self.completed else None,
            "completed": self.completed,
            "wall": wall,
            "error": error,
        }


def drain_gigq(
    db: Path, n: int, timeout: float, workers: int, barrier: bool, executor: str = "process"
) -> _Tally:
    """GigQ's worker loop in burst mode, stopped by its own lifecycle hooks once `n` jobs
    succeeded here (one worker) or by burst once nothing is left (several)."""
    from gigq import Worker, hookimpl

    tally = _Tally(n, own_jobs_only=workers > 1)
    worker = Worker(
        str(db), polling_interval=POLLING_INTERVAL, durability="full", executor=executor
    )

    class Probe:
        @hookimpl
        def gigq_worker_started(self) -> None:
            if barrier:
                print("ready", flush=True)
                sys.stdin.readline()  # the parent's "go", once every worker is ready

        @hookimpl
        def gigq_job_started(self) -> None:
            tally.started()

        @hookimpl
        def gigq_job_succeeded(self) -> None:
            tally.succeeded()
            if tally.finished.is_set():
                worker.stop()

        @hookimpl
        def gigq_job_failed(self, job: Any, error: Any) -> None:
            tally.failed(f"job {job.id} failed: {error.type}: {error.message}")
            worker.stop()

    worker.queue.pm.register(Probe(), name="benchmark-probe")
    watchdog = threading.Timer(timeout, worker.stop)
    watchdog.daemon = True
    watchdog.start()
    try:
        worker.start(burst=True)
    finally:
        watchdog.cancel()
        worker.close()
    return tally


def drain_huey(db: Path, n: int, timeout: float, workers: int, executor: str = "process") -> _Tally:
    """huey's consumer with `workers` worker processes (threads for GigQ's inline
    executor), stopped by its signals once `n` tasks completed."""
    from huey.signals import SIGNAL_COMPLETE, SIGNAL_ERROR, SIGNAL_EXECUTING

    from benchmarks.huey_bench import make_huey

    tally = _Tally(n)
    huey, _ = make_huey(db, fsync=True)

    def on_executing(signal: str, task: Any) -> None:
        tally.started()

    def on_complete(signal: str, task: Any) -> None:
        tally.succeeded()

    def on_error(signal: str, task: Any, exc: BaseException | None = None) -> None:
        tally.failed(f"task {task.id} failed: {exc!r}")

    huey.signal(SIGNAL_EXECUTING)(on_executing)
    huey.signal(SIGNAL_COMPLETE)(on_complete)
    huey.signal(SIGNAL_ERROR)(on_error)

    consumer = huey.create_consumer(
        workers=workers,
        worker_type=HUEY_WORKER_TYPE if executor == "process" else "thread",
        periodic=False,
        initial_delay=POLLING_INTERVAL,
        check_worker_health=False,
    )
    consumer.start()
    try:
        tally.finished.wait(timeout)
    finally:
        consumer.stop(graceful=True)
        huey.storage.close()
    return tally


def main(argv: list[str] | None = None) -> int:
    """Drain one queue and print the report as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.drain_worker")
    parser.add_argument("system", choices=("gigq", "huey"))
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument(
        "--workers", type=int, default=1, help="GigQ: processes in the drain; huey: workers"
    )
    parser.add_argument("--barrier", action="store_true", help="GigQ: wait for 'go' on stdin")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument(
        "--executor",
        choices=("process", "inline"),
        default="process",
        help="GigQ's executor; huey: process or thread workers",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.system == "gigq":
        tally = drain_gigq(
            args.db, args.jobs, args.timeout, args.workers, args.barrier, args.executor
        )
    else:
        tally = drain_huey(args.db, args.jobs, args.timeout, args.workers, args.executor)
    report = tally.report(time.perf_counter() - start)
    print(json.dumps(report), flush=True)
    return 0 if report["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
