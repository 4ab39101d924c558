"""A submitter process for the contention runs:
`python -m tests.reliability._paced_submitter DB LEDGER OUT THREADS SECONDS INTERVAL SEED`.

THREADS threads share one JobQueue and each submits a `chaos_jobs.work` job every INTERVAL
seconds (0: as fast as it can) for SECONDS. OUT receives JSON: the acknowledged ids, every
submit's latency in seconds, and the errors that reached the caller, by type."""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from collections import Counter

from gigq_core import GigQError, Job, JobQueue, make_plugin_manager


def main(
    db: str, ledger: str, out: str, threads: int, seconds: float, interval: float, seed: int
) -> None:
    """Submit until the time is up, then write the report."""
    queue = JobQueue(db, plugin_manager=make_plugin_manager(load_entrypoints=False))
    ids: list[str] = []
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def submitter(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        # Spread the threads' phases, so the pacing does not make them arrive together.
        next_at = time.monotonic() + rng.uniform(0, interval)
        while True:
            now = time.monotonic()
            if now >= end:
                return
            if interval and next_at > now:
                time.sleep(next_at - now)
            job = Job("work", "tests.process.chaos_jobs:work", params={"ledger": ledger})
            begun = time.perf_counter()
            try:
                job_id = queue.submit(job)
            except GigQError as err:
                with lock:
                    errors[type(err).__name__] += 1
                continue
            took = time.perf_counter() - begun
            with lock:
                ids.append(job_id)
                latencies.append(took)
            next_at += interval

    workers = [threading.Thread(target=submitter, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    queue.close()
    with open(out, "w", encoding="utf-8") as handle:
        json.dump({"ids": ids, "latencies": latencies, "errors": dict(errors)}, handle)


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], args[1], args[2], int(args[3]), float(args[4]), float(args[5]), int(args[6]))
