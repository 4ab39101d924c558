"""GigQ's side: each workload returns its timed seconds, after checking exactly-once."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import ledger
from benchmarks.common import DRAINS, BenchmarkError, payloads, run_drain_worker
from benchmarks.jobs import burn, noop
from gigq import Job, JobQueue

NAME = "GigQ"

#: Pinned so a `GIGQ_DURABILITY` in the environment cannot change what is measured.
SETTINGS: dict[str, Any] = {"durability": "full"}

#: The job function of each job kind (see `benchmarks.jobs`).
JOBS: dict[str, Callable[..., None]] = {"noop": noop, "burn": burn}


def version() -> str:
    """GigQ's version (always installed: the runner is part of it)."""
    import gigq

    return str(getattr(gigq, "__version__", "unknown"))


def _open(db: Path) -> JobQueue:
    return JobQueue(str(db), **SETTINGS)


def _verify_stored(db: Path, ids: list[str], sent: list[dict[str, str]]) -> None:
    """Every submitted job is stored once, pending, with its own payload."""
    with _open(db) as queue:
        stored = queue.list_jobs(limit=len(ids) + 1)
        pending = queue.stats()["pending"]
    ledger.verify(f"{NAME} stored jobs", ids, (job["id"] for job in stored))
    ledger.verify(
        f"{NAME} stored payloads", (p["id"] for p in sent), (j["params"]["id"] for j in stored)
    )
    if pending != len(ids):
        raise BenchmarkError(f"{NAME}: {pending} jobs pending after submitting {len(ids)}")


def enqueue(workdir: Path, n: int) -> float:
    """Submit `n` jobs one at a time (one transaction each); the Job objects are built in the
    timed loop, as a caller would."""
    db = workdir / "gigq.db"
    sent = payloads(n, workdir / "ledger")
    with _open(db) as queue:
        start = time.perf_counter()
        ids = [queue.submit(Job("noop", noop, params=p)) for p in sent]
        elapsed = time.perf_counter() - start
    _verify_stored(db, ids, sent)
    return elapsed


def enqueue_batch(workdir: Path, n: int) -> float:
    """Submit `n` jobs with one `submit_many` (one transaction)."""
    db = workdir / "gigq.db"
    sent = payloads(n, workdir / "ledger")
    with _open(db) as queue:
        start = time.perf_counter()
        ids = queue.submit_many([Job("noop", noop, params=p) for p in sent])
        elapsed = time.perf_counter() - start
    _verify_stored(db, ids, sent)
    return elapsed


def drain(
    workdir: Path, n: int, workers: int = 1, job: str = "noop", executor: str = "process"
) -> float:
    """Run `n` queued jobs with `workers` worker processes started fresh; the first job's
    start to the last job's completion, across the workers."""
    db = workdir / "gigq.db"
    book = workdir / "ledger"
    sent = payloads(n, book)
    with _open(db) as queue:
        queue.submit_many([Job(job, JOBS[job], params=p) for p in sent])
    report = run_drain_worker("gigq", db, n, workers, executor)
    label = f"{NAME} drain ({workers} worker{'s' if workers > 1 else ''}, {job})"
    ledger.verify_ledger(label, book, (p["id"] for p in sent))
    with _open(db) as queue:
        stats = queue.stats()
    if stats["completed"] != n or stats["total"] != n:
        raise BenchmarkError(f"{label}: expected {n} completed jobs, found {stats}")
    return float(report["elapsed"])


WORKLOADS: dict[str, Callable[[Path, int], float] | None] = {
    "enqueue": enqueue,
    "enqueue_batch": enqueue_batch,
    **{
        name: functools.partial(drain, workers=spec.workers, job=spec.job, executor=spec.executor)
        for name, spec in DRAINS.items()
    },
}
