"""`python -m benchmarks.dag_scale`: does claiming stay flat with many waiting dependents?

For each size N (default 1,000 and 100,000) it builds a SQLite queue holding one pending job
that never becomes due (run_at a year away) and N jobs that depend on it, so they wait
forever, plus `--claims` ready jobs. Then it times, through the storage port:

- claim (hit): claiming one ready job, `--claims` times (each claim commits);
- claim (idle): claiming when no job is ready, as an idle worker polls, `--claims` times.

It prints a Markdown table of medians (and p90) per size with the ratio large/small. A
ratio near 1 means the waiting dependents cost claiming nothing. Exit 1 if a claim returned
the wrong job (a dependent, or the blocker).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from gigq import Job, JobQueue

#: The jobs are never run (nothing here starts a worker); any importable function will do.
FUNCTION = "benchmarks.jobs:noop"

#: Jobs per submit_many transaction while filling the queue.
BATCH = 5_000


def fill(queue: JobQueue, waiting: int, ready: int) -> tuple[str, set[str]]:
    """Submit the blocker, `waiting` dependents of it and `ready` free jobs; returns the
    blocker's id and the ready jobs' ids."""
    blocker = queue.submit(Job("blocker", FUNCTION, delay=timedelta(days=365)))
    left = waiting
    while left:
        count = min(BATCH, left)
        queue.submit_many(Job("waiting", FUNCTION, dependencies=[blocker]) for _ in range(count))
        left -= count
    ids = queue.submit_many(Job("ready", FUNCTION) for _ in range(ready))
    return blocker, set(ids)


def measure(folder: Path, waiting: int, claims: int, durability: str) -> dict[str, list[float]]:
    """Seconds of each hit claim and each idle claim, with `waiting` dependents stored."""
    url = f"sqlite:///{folder / f'dag-{waiting}.db'}?durability={durability}"
    with JobQueue(url) as queue:
        started = time.perf_counter()
        _, ready = fill(queue, waiting, claims)
        print(
            f"  {waiting:,} waiting dependents stored in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
        storage, clock = queue.storage, queue.clock
        hits: list[float] = []
        for _ in range(claims):
            now = clock.now()
            started = time.perf_counter()
            claimed = storage.claim("bench", 1, now, 30.0)
            hits.append(time.perf_counter() - started)
            if len(claimed) != 1 or claimed[0].id not in ready:
                raise SystemExit(f"a claim returned {[j.name for j in claimed]}, not a ready job")
            ready.discard(claimed[0].id)
        idle: list[float] = []
        for _ in range(claims):
            now = clock.now()
            started = time.perf_counter()
            claimed = storage.claim("bench", 1, now, 30.0)
            idle.append(time.perf_counter() - started)
            if claimed:
                raise SystemExit(f"an idle claim returned {[j.name for j in claimed]}")
        counts = queue.stats()
        if counts["pending"] != waiting + 1:
            raise SystemExit(f"expected {waiting + 1} pending jobs, found {counts}")
    return {"claim (hit)": hits, "claim (idle)": idle}


def ms(values: list[float], quantile: float = 0.5) -> float:
    """A quantile of `values`, in milliseconds."""
    if quantile == 0.5:
        return statistics.median(values) * 1000
    return statistics.quantiles(values, n=10)[int(quantile * 10) - 1] * 1000


def main(argv: list[str] | None = None) -> int:
    """Measure both sizes and print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dag_scale", description=__doc__)
    parser.add_argument("--small", type=int, default=1_000, help="waiting dependents, small")
    parser.add_argument("--large", type=int, default=100_000, help="waiting dependents, large")
    parser.add_argument("--claims", type=int, default=200, help="claims timed per size")
    parser.add_argument(
        "--durability",
        choices=["full", "normal"],
        default="normal",
        help="normal (default) keeps fsync noise out of what is compared: the query cost",
    )
    parser.add_argument("--tmp", default=None, help="folder of the databases (local disk)")
    args = parser.parse_args(argv)
    if args.claims < 10:
        parser.error("--claims must be at least 10")
    results = {}
    with tempfile.TemporaryDirectory(prefix="gigq-dag-scale-", dir=args.tmp) as folder:
        for size in (args.small, args.large):
            print(f"measuring with {size:,} waiting dependents", file=sys.stderr)
            results[size] = measure(Path(folder), size, args.claims, args.durability)
    small, large = results[args.small], results[args.large]
    print(
        f"Claim latency via the storage port (SQLite, durability={args.durability}), "
        f"{args.claims} claims per cell, median (p90) in ms\n"
    )
    print(f"| metric | {args.small:,} waiting | {args.large:,} waiting | ratio (median) |")
    print("|---|---:|---:|---:|")
    for metric in small:
        a, b = small[metric], large[metric]
        print(
            f"| {metric} | {ms(a):.3f} ({ms(a, 0.9):.3f}) | {ms(b):.3f} ({ms(b, 0.9):.3f}) "
            f"| {ms(b) / ms(a):.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
