"""litequeue's side (a second peer): `LiteQueue` on a file, switched to `synchronous=FULL`.

litequeue sets `journal_mode=WAL` and `synchronous=NORMAL` on its own connection; the runner
sets `PRAGMA synchronous = FULL` on that same connection right after opening it, so it commits
as durably as everything else in the table. Its connection is in autocommit mode, so each
`put` is its own transaction. litequeue 0.9 has no batch put: `enqueue_batch` wraps the `put`
calls in its own public `transaction()` context manager, one transaction for all of them.
`drain` pops, runs and marks done in one process (two commits per message, as its API does).
"""

from __future__ import annotations

import importlib.metadata
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import ledger
from benchmarks.common import BenchmarkError, payloads
from benchmarks.jobs import close_ledgers, noop

NAME = "litequeue"

#: litequeue's MessageStatus values (READY, DONE), as stored.
READY, DONE = 0, 2


def version() -> str | None:
    """litequeue's installed version, or None when it is not installed."""
    try:
        import litequeue  # noqa: F401
    except ImportError:
        return None
    try:
        return importlib.metadata.version("litequeue")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def open_queue(db: Path) -> Any:
    """A `LiteQueue` on `db`, its connection switched to synchronous=FULL."""
    from litequeue import LiteQueue

    queue = LiteQueue(str(db))
    queue.conn.execute("PRAGMA synchronous = FULL")
    level = queue.conn.execute("PRAGMA synchronous").fetchone()[0]
    mode = queue.conn.execute("PRAGMA journal_mode").fetchone()[0]
    if level != 2 or mode != "wal":
        raise BenchmarkError(f"{NAME}: synchronous={level}, journal_mode={mode}; wanted 2, wal")
    return queue


def _verify(db: Path, sent: list[dict[str, str]], message_ids: list[str], status: int) -> None:
    """Every message stored once, with its own payload, in `status`."""
    queue = open_queue(db)
    try:
        rows = queue.conn.execute(f"SELECT data, message_id, status FROM {queue.table}").fetchall()
    finally:
        queue.close()
    if message_ids:
        ledger.verify(f"{NAME} stored messages", message_ids, (r["message_id"] for r in rows))
    ledger.verify(
        f"{NAME} stored payloads",
        (p["id"] for p in sent),
        (json.loads(r["data"])["id"] for r in rows),
    )
    wrong = sum(1 for r in rows if r["status"] != status)
    if wrong:
        raise BenchmarkError(f"{NAME}: {wrong} of {len(rows)} messages not in status {status}")


def enqueue(workdir: Path, n: int) -> float:
    """`put` `n` messages one at a time (each its own transaction), JSON built in the loop."""
    db = workdir / "litequeue.db"
    sent = payloads(n, workdir / "ledger")
    queue = open_queue(db)
    try:
        start = time.perf_counter()
        ids = [queue.put(json.dumps(p)).message_id for p in sent]
        elapsed = time.perf_counter() - start
    finally:
        queue.close()
    _verify(db, sent, ids, READY)
    return elapsed


def enqueue_batch(workdir: Path, n: int) -> float:
    """`put` `n` messages inside one `with queue.transaction():` (no batch API in 0.9)."""
    db = workdir / "litequeue.db"
    sent = payloads(n, workdir / "ledger")
    queue = open_queue(db)
    try:
        start = time.perf_counter()
        with queue.transaction(mode="IMMEDIATE"):
            ids = [queue.put(json.dumps(p)).message_id for p in sent]
        elapsed = time.perf_counter() - start
    finally:
        queue.close()
    _verify(db, sent, ids, READY)
    return elapsed


def drain(workdir: Path, n: int) -> float:
    """`pop`, run, `done`, in this process, until the queue is empty; the first pop's
    commit to the last `done`'s commit."""
    db = workdir / "litequeue.db"
    book = workdir / "ledger"
    sent = payloads(n, book)
    queue = open_queue(db)
    try:
        with queue.transaction(mode="IMMEDIATE"):
            for p in sent:
                queue.put(json.dumps(p))
        first: float | None = None
        last = 0.0
        ran = 0
        while (message := queue.pop()) is not None:
            if first is None:
                first = time.perf_counter()
            noop(**json.loads(message.data))
            queue.done(message.message_id)
            last = time.perf_counter()
            ran += 1
    finally:
        queue.close()
        close_ledgers()
    if ran != n or first is None:
        raise BenchmarkError(f"{NAME} drain: {ran} of {n} messages ran")
    ledger.verify_ledger(f"{NAME} drain", book, (p["id"] for p in sent))
    _verify(db, sent, [], DONE)
    return last - first


WORKLOADS: dict[str, Callable[[Path, int], float] | None] = {
    "enqueue": enqueue,
    "enqueue_batch": enqueue_batch,
    "drain": drain,
}
