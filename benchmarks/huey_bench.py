"""huey's side (the baseline): `SqliteHuey` in WAL mode with `synchronous=FULL`, as GigQ.

`SqliteStorage(fsync=True)` sets `pragma synchronous=2` (FULL) on every connection and
`journal_mode="wal"` is its default; both are passed explicitly so a change of huey's defaults
cannot change what is measured. huey has no batch enqueue, so `enqueue_batch` is None.
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import ledger
from benchmarks.common import BenchmarkError, payloads, run_drain_worker
from benchmarks.jobs import noop_payload

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


def make_huey(db: Path, fsync: bool = True) -> tuple[Any, Any]:
    """A `SqliteHuey` on `db` and its no-op task. `fsync=False` (synchronous=OFF, on this
    connection only) is for filling a queue before a drain, never for a measurement."""
    from huey import SqliteHuey

    huey = SqliteHuey("bench", filename=str(db), journal_mode="wal", fsync=fsync)
    return huey, huey.task()(noop_payload)


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
    huey, task = make_huey(db)
    try:
        start = time.perf_counter()
        results = [task(p) for p in sent]
        elapsed = time.perf_counter() - start
        _verify_stored(huey, [r.id for r in results], sent)
    finally:
        huey.storage.close()
    return elapsed


def drain(workdir: Path, n: int) -> float:
    """Run `n` queued tasks with a one-thread consumer in a fresh process; first dequeue to
    last completion."""
    db = workdir / "huey.db"
    book = workdir / "ledger"
    sent = payloads(n, book)
    filler, task = make_huey(db, fsync=False)
    try:
        for p in sent:
            task(p)
    finally:
        filler.storage.close()
    report = run_drain_worker("huey", db, n)
    ledger.verify_ledger(f"{NAME} drain", book, (p["id"] for p in sent))
    huey, _ = make_huey(db)
    try:
        left = huey.pending_count()
    finally:
        huey.storage.close()
    if left:
        raise BenchmarkError(f"{NAME} drain: {left} tasks still queued after the drain")
    return float(report["elapsed"])


WORKLOADS: dict[str, Callable[[Path, int], float] | None] = {
    "enqueue": enqueue,
    "enqueue_batch": None,
    "drain": drain,
}
