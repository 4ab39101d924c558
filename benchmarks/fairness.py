"""The `fairness` workload: does a ready job ever wait while a worker has nothing to run?

GigQ only. Two worker processes (`run_drain_worker`, default executor) drain a mix of 200
jobs that sleep 1 ms and 4 that sleep 1 s, the long ones spread evenly through the submit
order (one `submit_many`). Afterwards the store's own records give, for each job, when it
became ready (the later of `created_at` and `run_at`) and when it started (`started_at`:
when it really started, also for a job a worker held before running it), and for each worker
(its execution's `worker_id`) its busy intervals (its jobs' `started_at` to `completed_at`;
a completion may be stamped when the outcome is recorded, a little after the job returned,
so idleness shorter than that delay can go unseen). Within the drain (the first start to
the last completion), a job "waited while a worker was idle" during the part of its wait in
which at least one worker had no running job. The measure is the longest such time over all
jobs, in one continuous stretch (what prefetch could make worse: a worker idle while another
holds a job) and summed over the job's whole wait (which also gathers the short gaps
between one job and the next claim).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks import ledger
from benchmarks.common import BenchmarkError, payloads, run_drain_worker
from benchmarks.jobs import nap
from gigq import Job, JobQueue

#: Jobs of the mix, their sleep in seconds, and the workers draining it.
SHORT_JOBS, SHORT_SECONDS = 200, 0.001
LONG_JOBS, LONG_SECONDS = 4, 1.0
WORKERS = 2

#: A span of time, (start, end) in seconds.
Interval = tuple[float, float]


def merge(intervals: Sequence[Interval]) -> list[Interval]:
    """The union of `intervals`, as sorted disjoint intervals (empty ones dropped)."""
    merged: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def gaps(busy: Sequence[Interval], span: Interval) -> list[Interval]:
    """The parts of `span` that no interval of `busy` covers, in order."""
    found: list[Interval] = []
    at = span[0]
    for start, end in merge(busy):
        if start > at:
            found.append((at, min(start, span[1])))
        at = max(at, end)
        if at >= span[1]:
            break
    if at < span[1]:
        found.append((at, span[1]))
    return [g for g in found if g[1] > g[0]]


def idle_waits(
    waits: Sequence[Interval],
    busy: Mapping[str, Sequence[Interval]],
    span: Interval | None = None,
) -> tuple[float, float]:
    """For each wait (a job's ready time to its start), the time within `span` during which
    at least one worker of `busy` (its busy intervals, by worker) had no running job.

    `span` defaults to the first busy start to the last busy end. Returns the longest such
    time over all waits in one continuous stretch, and the longest summed over one wait,
    in seconds; (0, 0) when nothing was busy.
    """
    everything = [i for intervals in busy.values() for i in intervals]
    if span is None:
        if not everything:
            return 0.0, 0.0
        span = (min(i[0] for i in everything), max(i[1] for i in everything))
    idle = merge([g for intervals in busy.values() for g in gaps(intervals, span)])
    stretch = total = 0.0
    for ready, started in waits:
        pieces = [min(started, end) - max(ready, start) for start, end in idle]
        pieces = [p for p in pieces if p > 0]
        if pieces:
            stretch = max(stretch, max(pieces))
            total = max(total, sum(pieces))
    return stretch, total


def mix(short: int = SHORT_JOBS, long: int = LONG_JOBS) -> list[float]:
    """The sleep of each job in submit order: `long` long ones spread evenly among the
    short ones, each in the middle of its share."""
    total = short + long
    spots = {k * total // long + total // (2 * long) for k in range(long)} if long else set()
    return [LONG_SECONDS if i in spots else SHORT_SECONDS for i in range(total)]


def _seconds(value: Any) -> float:
    return float(value.timestamp())


def measure(workdir: Path, short: int = SHORT_JOBS, long: int = LONG_JOBS) -> dict[str, float]:
    """Drain the mix with `WORKERS` workers; the longest idle wait (ms, as one stretch and
    summed), the longest wait of any job from the drain's start (ms) and the drain's
    seconds."""
    db = workdir / "gigq.db"
    book = workdir / "ledger"
    sleeps = mix(short, long)
    sent = payloads(len(sleeps), book)
    jobs = [Job("nap", nap, params={**p, "seconds": s}) for p, s in zip(sent, sleeps, strict=True)]
    with JobQueue(str(db), durability="full") as queue:
        queue.submit_many(jobs)
    report = run_drain_worker("gigq", db, len(jobs), WORKERS)
    ledger.verify_ledger("GigQ fairness drain", book, (p["id"] for p in sent))
    waits: list[Interval] = []
    busy: dict[str, list[Interval]] = {}
    with JobQueue(str(db), durability="full") as queue:
        for record in queue.jobs(limit=len(jobs) + 1, order="oldest"):
            runs = queue.executions(record.id)
            if len(runs) != 1 or runs[0].completed_at is None or runs[0].status != "completed":
                raise BenchmarkError(f"GigQ fairness: job {record.id} has executions {runs}")
            # The job's own times: its `started_at` is when it really started, also for a
            # job a worker held before running it.
            started, completed = record.started_at, record.completed_at
            if started is None or completed is None:
                raise BenchmarkError(f"GigQ fairness: job {record.id} has no start or end")
            ready = max(_seconds(record.created_at), _seconds(record.run_at))
            waits.append((ready, _seconds(started)))
            busy.setdefault(runs[0].worker_id, []).append((_seconds(started), _seconds(completed)))
    if len(waits) != len(jobs):
        raise BenchmarkError(f"GigQ fairness: {len(waits)} of {len(jobs)} jobs stored")
    for k in range(WORKERS - len(busy)):
        busy[f"worker that ran nothing {k + 1}"] = []  # idle through the whole drain
    stretch, total = idle_waits(waits, busy)
    first = min(start for start, _ in waits)
    return {
        "idle_wait_ms": stretch * 1000,
        "idle_wait_total_ms": total * 1000,
        # From the drain's first start: the jobs were all submitted before the workers ran.
        "longest_wait_ms": max(s - max(r, first) for r, s in waits) * 1000,
        "drain_s": float(report["elapsed"]),
    }
