"""The `scale` workload: does GigQ stay as fast when the queue is large?

For each size S it fills a fresh SQLite queue (`durability="full"`) once, through
`submit_many` in batches, in one of two shapes:

- `pending`: S pending jobs, all ready;
- `waiting`: one blocker job that never becomes due (run_at a year away) and S jobs that
  depend on it, so they wait forever.

Every job takes the benchmark's small payload dict. Then, for each round (`--repeat` rounds
on the same database; the fill is not repeated), it times:

- submit: `ops` jobs submitted one at a time (`queue.submit`, one durable transaction
  each), as jobs/s;
- claim: `ops` single claims through the storage port (`storage.claim(..., 1, ...)`, each
  its own transaction), each timed, as median and p90 in ms. A claim must return one ready
  job it has not returned before (never a waiting dependent or the blocker).

and finally the database's size after a WAL checkpoint divided by the jobs stored (bytes
per job). The submits come before the claims, so the queue holds between S and S + ops
pending jobs while claims are timed, and in `waiting` the claims take the jobs just
submitted. The table compares each size with the smallest (ratio large/small).
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import BenchmarkError, payloads
from benchmarks.jobs import noop
from gigq import Job, JobQueue

#: The two shapes of a large queue.
KINDS = ("pending", "waiting")

#: Jobs per submit_many transaction while filling.
FILL_BATCH = 5_000

#: Seconds of lease on each timed claim (nothing runs the claimed jobs).
LEASE = 30.0


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fill(queue: JobQueue, kind: str, size: int, book: Path) -> set[str]:
    """Store the shape `kind` with `size` jobs; returns the ids of the ready jobs."""
    ready: set[str] = set()
    blocker: str | None = None
    if kind == "waiting":
        blocker = queue.submit(
            Job(
                "blocker",
                noop,
                params={"id": "blocker", "ledger": os.devnull},
                delay=timedelta(days=365),
            )
        )
    left = size
    while left:
        count = min(FILL_BATCH, left)
        if blocker is None:
            jobs = [Job("pending", noop, params=p) for p in payloads(count, book)]
        else:
            deps = [blocker]
            jobs = [
                Job("waiting", noop, params=p, dependencies=deps) for p in payloads(count, book)
            ]
        ids = queue.submit_many(jobs)
        if blocker is None:
            ready.update(ids)
        left -= count
    return ready


def _round(queue: JobQueue, ready: set[str], ops: int, book: Path) -> dict[str, Any]:
    """One round: `ops` single submits, then `ops` single claims, each checked."""
    sent = payloads(ops, book)
    start = time.perf_counter()
    ids = [queue.submit(Job("noop", noop, params=p)) for p in sent]
    submit_seconds = time.perf_counter() - start
    if len(set(ids)) != ops:
        raise BenchmarkError(f"scale: {ops} submits returned {len(set(ids))} distinct ids")
    ready.update(ids)
    storage, clock = queue.storage, queue.clock
    claims: list[float] = []
    for _ in range(ops):
        now = clock.now()
        start = time.perf_counter()
        got = storage.claim("bench-scale", 1, now, LEASE)
        claims.append(time.perf_counter() - start)
        if len(got) != 1 or got[0].id not in ready:
            raise BenchmarkError(
                f"scale: a claim returned {[j.name for j in got]}, not a ready job"
            )
        ready.discard(got[0].id)  # so a second claim of it fails the check above
    return {
        "submit_seconds": submit_seconds,
        "submit_per_s": ops / submit_seconds,
        "claim_seconds": claims,
        "claim_median_ms": statistics.median(claims) * 1000,
        "claim_p90_ms": statistics.quantiles(claims, n=10)[8] * 1000,
    }


def _bytes(db: Path) -> int:
    """The database's size once its WAL is checkpointed into it (plus what the WAL still
    holds, should a checkpoint not complete)."""
    conn = sqlite3.connect(str(db))
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    wal = db.with_name(db.name + "-wal")
    return db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def measure(folder: Path, kind: str, size: int, rounds: int, ops: int) -> dict[str, Any]:
    """Fill once, then `rounds` rounds; the measures of each round plus bytes per job."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if ops < 10:
        raise ValueError("ops must be at least 10 (for the p90)")
    db = folder / f"scale-{kind}-{size}.db"
    book = folder / "ledger"
    with JobQueue(str(db), durability="full") as queue:
        start = time.perf_counter()
        ready = fill(queue, kind, size, book)
        filled = time.perf_counter() - start
        _say(f"scale {kind:<7} {size:>9,} jobs stored in {filled:.1f} s")
        results = [_round(queue, ready, ops, book) for _ in range(rounds)]
        stats = queue.stats()
    expected = {
        "running": rounds * ops,
        "pending": size + (1 if kind == "waiting" else 0),
        "total": size + (1 if kind == "waiting" else 0) + rounds * ops,
    }
    if any(stats[key] != value for key, value in expected.items()):
        raise BenchmarkError(f"scale {kind} {size}: expected {expected}, found {stats}")
    size_bytes = _bytes(db)
    return {
        "kind": kind,
        "size": size,
        "jobs_stored": stats["total"],
        "fill_seconds": filled,
        "db_bytes": size_bytes,
        "bytes_per_job": size_bytes / stats["total"],
        "rounds": results,
    }
