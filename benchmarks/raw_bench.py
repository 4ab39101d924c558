"""The raw sqlite3 baselines: what the same work costs with nothing but SQL, in this process.

A minimal but realistic queue table (id, payload, status, lease, result, an index on
(status, id)), WAL, `synchronous=FULL`, the same payload dicts stored as JSON text:

- `enqueue`: one row per transaction (`BEGIN IMMEDIATE` / `INSERT` / `COMMIT`);
- `enqueue_batch`: every row inserted by one `executemany` in one transaction;
- `drain`: one process, two commits per job: a claim (`UPDATE ... RETURNING` of the oldest
  pending row, status and lease set) and a completion (status and result set);
- `drain_batch32`: one process, claim 32 rows in one commit, run them, then one commit
  completing all 32: the batched limit.

Each drain job is the same ledger append as everywhere else (`benchmarks.jobs.noop`), and
the clock runs from the first claim's commit to the last completion's commit.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import ledger
from benchmarks.common import BenchmarkError, payloads
from benchmarks.jobs import close_ledgers, noop

NAME = "raw sqlite3"

#: Jobs per claim (and per completion commit) of `drain_batch32`.
BATCH = 32

#: Seconds a claimed row is leased for (stored, never enforced here: nothing expires).
LEASE = 30.0

SCHEMA = """
CREATE TABLE jobs (
    id      INTEGER PRIMARY KEY,
    payload TEXT NOT NULL,
    status  TEXT NOT NULL DEFAULT 'pending',
    lease   REAL,
    result  TEXT
);
CREATE INDEX jobs_status_id ON jobs (status, id);
"""

INSERT = "INSERT INTO jobs (payload) VALUES (?)"
CLAIM = (
    "UPDATE jobs SET status = 'running', lease = ? WHERE id IN "
    "(SELECT id FROM jobs WHERE status = 'pending' ORDER BY id LIMIT ?) RETURNING id, payload"
)
COMPLETE = (
    "UPDATE jobs SET status = 'done', result = ?, lease = NULL WHERE id = ? AND status = 'running'"
)


def version() -> str:
    """The SQLite library's version (the baseline is always there)."""
    return sqlite3.sqlite_version


def connect(db: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, synchronous=FULL,
    with the table created if it is missing."""
    conn = sqlite3.connect(str(db), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA busy_timeout = 30000")
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'jobs'").fetchone() is None:
        conn.executescript(SCHEMA)
    return conn


def _verify(db: Path, sent: list[dict[str, str]], status: str) -> None:
    """Every payload stored once, each row in `status`."""
    conn = connect(db)
    try:
        rows = conn.execute("SELECT payload, status FROM jobs").fetchall()
    finally:
        conn.close()
    ledger.verify(
        f"{NAME} stored rows", (p["id"] for p in sent), (json.loads(r[0])["id"] for r in rows)
    )
    wrong = sum(1 for _, s in rows if s != status)
    if wrong:
        raise BenchmarkError(f"{NAME}: {wrong} of {len(rows)} rows are not {status!r}")


def enqueue(workdir: Path, n: int) -> float:
    """Insert `n` rows one per transaction; the JSON text is built in the timed loop."""
    db = workdir / "raw.db"
    sent = payloads(n, workdir / "ledger")
    conn = connect(db)
    try:
        start = time.perf_counter()
        for p in sent:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(INSERT, (json.dumps(p),))
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    _verify(db, sent, "pending")
    return elapsed


def _fill(conn: sqlite3.Connection, sent: list[dict[str, str]]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(INSERT, ((json.dumps(p),) for p in sent))
    conn.execute("COMMIT")


def enqueue_batch(workdir: Path, n: int) -> float:
    """Insert `n` rows with one `executemany` in one transaction, JSON built inside."""
    db = workdir / "raw.db"
    sent = payloads(n, workdir / "ledger")
    conn = connect(db)
    try:
        start = time.perf_counter()
        _fill(conn, sent)
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    _verify(db, sent, "pending")
    return elapsed


def _drain(conn: sqlite3.Connection, batch: int) -> tuple[float, int]:
    """Claim `batch` rows per commit, run them, complete them in one commit, until none is
    left; returns (seconds from the first claim's commit to the last completion, jobs)."""
    first: float | None = None
    done = 0
    result = json.dumps(None)
    while True:
        conn.execute("BEGIN IMMEDIATE")
        rows = conn.execute(CLAIM, (time.time() + LEASE, batch)).fetchall()
        conn.execute("COMMIT")
        if not rows:
            break
        if first is None:
            first = time.perf_counter()
        for _, payload in rows:
            noop(**json.loads(payload))
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(COMPLETE, ((result, row_id) for row_id, _ in rows))
        conn.execute("COMMIT")
        done += len(rows)
        last = time.perf_counter()
    if first is None:
        return 0.0, 0
    return last - first, done


def _drain_workload(workdir: Path, n: int, batch: int) -> float:
    db = workdir / "raw.db"
    book = workdir / "ledger"
    sent = payloads(n, book)
    conn = connect(db)
    try:
        _fill(conn, sent)
        elapsed, done = _drain(conn, batch)
    finally:
        conn.close()
        close_ledgers()
    if done != n:
        raise BenchmarkError(f"{NAME} drain: {done} of {n} jobs ran")
    ledger.verify_ledger(f"{NAME} drain (claim {batch})", book, (p["id"] for p in sent))
    _verify(db, sent, "done")
    return elapsed


def drain(workdir: Path, n: int) -> float:
    """Drain `n` rows in this process, two commits per job (claim one, complete one)."""
    return _drain_workload(workdir, n, 1)


def drain_batch32(workdir: Path, n: int) -> float:
    """Drain `n` rows in this process: claim 32 per commit, complete 32 per commit."""
    return _drain_workload(workdir, n, BATCH)


WORKLOADS: dict[str, Callable[[Path, int], float] | None] = {
    "enqueue": enqueue,
    "enqueue_batch": enqueue_batch,
    "drain": drain,
    "drain_batch32": drain_batch32,
}
