"""huey's side (the baseline): `SqliteHuey` in WAL mode with `synchronous=FULL`, as GigQ.

`SqliteStorage(fsync=True)` sets `pragma synchronous=2` (FULL) on every connection and
`journal_mode="wal"` is its default; both are passed explicitly so a change of huey's defaults
cannot change what is measured. huey has no batch enqueue, so `enqueue_batch` is None. Its
drains run its consumer with 1, 2 or 4 worker processes (`worker_type="process"`).
"""

from __future__ import annotations

import functools
import importlib.metadata
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import ledger
from benchmarks.common import DRAINS, BenchmarkError, payloads, run_drain_worker
from benchmarks.jobs import burn_payload, noop_payload, stamp_payload

NAME = "huey"


def version() -> str | None:
    """huey's installed version, or None when it is not installed."""
    try:
        import huey  # noqa: F401
    except ImportError:
        return None
    try:
        return importlib.metadata.version("huey")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def make_huey(db: Path, fsync: bool = True) -> tuple[Any, dict[str, Any]]:
    """A `SqliteHuey` on `db` and its tasks by job kind ("noop", "burn", "stamp").
    `fsync=False` (synchronous=OFF, on this connection only) is for filling a queue before a
    drain, never for a measurement."""
    from huey import SqliteHuey

    huey = SqliteHuey("bench", filename=str(db), journal_mode="wal", fsync=fsync)
    tasks = {
        "noop": huey.task()(noop_payload),
        "burn": huey.task()(burn_payload),
        "stamp": huey.task()(stamp_payload),
    }
    return huey, tasks


def _verify_stored(huey: Any, ids: list[str], sent: list[dict[str, str]]) -> None:
    stored = huey.pending()
    ledger.verify(f"{NAME} stored tasks", ids, (task.id for task in stored))
    ledger.verify(
        f"{NAME} stored payloads", (p["id"] for p in sent), (task.args[0]["id"] for task in stored)
    )


def enqueue(workdir: Path, n: int) -> float:
    """Enqueue `n` tasks one at a time (calling the task, as a caller would)."""
    db = workdir / "huey.db"
    sent = payloads(n, workdir / "ledger")
    huey, tasks = make_huey(db)
    task = tasks["noop"]
    try:
        start = time.perf_counter()
        results = [task(p) for p in sent]
        elapsed = time.perf_counter() - start
        _verify_stored(huey, [r.id for r in results], sent)
    finally:
        huey.storage.close()
    return elapsed


def drain(
    workdir: Path, n: int, workers: int = 1, job: str = "noop", executor: str = "process"
) -> float:
    """Run `n` queued tasks with a consumer of `workers` worker processes, in a fresh
    process; first dequeue to last completion."""
    db = workdir / "huey.db"
    book = workdir / "ledger"
    sent = payloads(n, book)
    filler, tasks = make_huey(db, fsync=False)
    try:
        for p in sent:
            tasks[job](p)
    finally:
        filler.storage.close()
    report = run_drain_worker("huey", db, n, workers, executor)
    ledger.verify_ledger(f"{NAME} {_label(workers, job)}", book, (p["id"] for p in sent))
    huey, _ = make_huey(db)
    try:
        left = huey.pending_count()
    finally:
        huey.storage.close()
    if left:
        raise BenchmarkError(f"{NAME} drain: {left} tasks still queued after the drain")
    return float(report["elapsed"])


def _label(workers: int, job: str) -> str:
    return f"drain ({workers} worker{'s' if workers > 1 else ''}, {job})"


WORKLOADS: dict[str, Callable[[Path, int], float] | None] = {
    "enqueue": enqueue,
    "enqueue_batch": None,
    **{
        name: functools.partial(drain, workers=spec.workers, job=spec.job, executor=spec.executor)
        for name, spec in DRAINS.items()
    },
}
