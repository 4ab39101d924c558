"""One drain in a fresh process: `python -m benchmarks.drain_worker {gigq,huey} --db PATH
--jobs N`.

Runs each system's real worker loop with one worker (GigQ: `Worker(...).start()`; huey: its
consumer with one worker thread) until `N` jobs have completed, then stops it. The clock runs
from the first job's start (right after its claim) to the last job's completion (after its
outcome is committed), so imports and start-up do not count. Prints one JSON line:
`{"elapsed": s, "completed": n, "wall": s, "error": null}`; exit 1 if the drain fell short.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import POLLING_INTERVAL


class _Tally:
    """First start, last completion and failures, shared with the worker's threads."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.first: float | None = None
        self.last: float | None = None
        self.completed = 0
        self.errors: list[str] = []
        self.finished = threading.Event()

    def started(self) -> None:
        if self.first is None:
            self.first = time.perf_counter()

    def succeeded(self) -> None:
        self.completed += 1
        if self.completed >= self.n:
            self.last = time.perf_counter()
            self.finished.set()

    def failed(self, message: str) -> None:
        self.errors.append(message)
        self.finished.set()

    def report(self, wall: float) -> dict[str, Any]:
        elapsed = (
            self.last - self.first if self.first is not None and self.last is not None else None
        )
        error = "; ".join(self.errors[:3]) or None
        if error is None and self.completed < self.n:
            error = f"only {self.completed} of {self.n} jobs completed before the timeout"
        return {"elapsed": elapsed, "completed": self.completed, "wall": wall, "error": error}


def drain_gigq(db: Path, n: int, timeout: float) -> _Tally:
    """GigQ's worker loop, stopped by its own lifecycle hooks once `n` jobs succeeded."""
    from gigq import Worker, hookimpl

    tally = _Tally(n)
    worker = Worker(str(db), polling_interval=POLLING_INTERVAL, durability="full")

    class Probe:
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
        worker.start()
    finally:
        watchdog.cancel()
        worker.close()
    return tally


def drain_huey(db: Path, n: int, timeout: float) -> _Tally:
    """huey's consumer (one worker thread), stopped by its signals once `n` jobs completed."""
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
        workers=1,
        worker_type="thread",
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
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    drain = drain_gigq if args.system == "gigq" else drain_huey
    start = time.perf_counter()
    tally = drain(args.db, args.jobs, args.timeout)
    report = tally.report(time.perf_counter() - start)
    print(json.dumps(report), flush=True)
    return 0 if report["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
