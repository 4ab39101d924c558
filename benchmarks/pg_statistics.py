"""`python -m benchmarks.pg_statistics`: GigQ on PostgreSQL in two states of the planner's
statistics, the same jobs in each.

- "analyzed empty": ANALYZE ran while the queue was empty, then the jobs arrived;
- "analyzed history": ANALYZE ran while the queue held only finished jobs (as many
  completed jobs and executions as the burst, written in SQL), then the jobs arrived (a
  burst on an established queue: autovacuum has not analysed the tables since);
- "analyzed full": ANALYZE ran with the jobs pending.

Autovacuum is off for the throwaway schema's tables, so the state holds for the whole run.
Per state: the time of one claim (of one job) with `--jobs` pending, on one storage; then
the drain rate of `--jobs` no-op jobs with 1 and with 4 worker processes (first start to
last completion, exactly-once checked), as `benchmarks.postgres` measures it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import ledger
from benchmarks.common import BenchmarkError, payloads
from benchmarks.jobs import noop
from benchmarks.postgres import DEFAULT_URL, _drop_schema, _with_query, workers

STATES = ("analyzed empty", "analyzed history", "analyzed full")
TABLES = ("jobs", "job_executions")

_HISTORY = (
    """INSERT INTO jobs (id, name, function, params, queue, priority, status, attempts,
        max_attempts, retry, retry_params, description, unique_scope, run_at, created_at,
        updated_at, started_at, completed_at, worker_id, result)
    SELECT 'done-' || g, 'noop', 'benchmarks.jobs:noop', '{}', 'default', 0, 'completed', 1,
        3, 'none', '{}', '', 'none', now(), now(), now(), now(), now(), 'w', 'null'
    FROM generate_series(1, %s::int) AS g""",
    """INSERT INTO job_executions (id, job_id, attempt, worker_id, token, status, started_at,
        completed_at, result)
    SELECT 'done-' || g, 'done-' || g, 1, 'w', 't' || g, 'completed', now(), now(), 'null'
    FROM generate_series(1, %s::int) AS g""",
)


def _prepare(target: str, state: str, book: Path, n: int) -> list[dict[str, str]]:
    """Create the store, submit `n` jobs and take statistics as `state` says."""
    from gigq import Job, JobQueue

    sent = payloads(n, book)
    with JobQueue(target, durability="full") as queue:
        with queue.storage._db.connection() as raw:
            for table in TABLES:
                raw.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
            if state == "analyzed history":
                for statement in _HISTORY:
                    raw.execute(statement, (n,))
            if state != "analyzed full":
                raw.execute(f"ANALYZE {', '.join(TABLES)}")
        queue.submit_many([Job("noop", noop, params=p) for p in sent])
        if state == "analyzed full":
            with queue.storage._db.connection() as raw:
                raw.execute(f"ANALYZE {', '.join(TABLES)}")
    return sent


def claim_times(target: str, state: str, n: int, claims: int, workdir: Path) -> list[float]:
    """Milliseconds per claim of one job, `claims` times, with `n` jobs pending."""
    from gigq import JobQueue

    _prepare(target, state, workdir / "ledger", n)
    times = []
    with JobQueue(target, durability="full") as queue:
        storage = queue.storage
        for _ in range(claims):
            start = time.perf_counter()
            got = storage.claim("bench-claimer", 1, datetime.now(UTC), 60.0, None)
            times.append((time.perf_counter() - start) * 1000)
            if len(got) != 1:
                raise BenchmarkError(f"a claim took {len(got)} jobs, not 1")
    return times


def drain(target: str, state: str, n: int, count: int, workdir: Path) -> float:
    """Jobs per second drained by `count` worker processes (exactly-once checked)."""
    from gigq import JobQueue
    from gigq_core.records import JobFilter

    book = workdir / "ledger"
    sent = _prepare(target, state, book, n)
    history = n if state == "analyzed history" else 0
    with workers(target, count, workdir), JobQueue(target, durability="full") as queue:
        deadline = time.monotonic() + 60 + n * 0.05
        while True:
            counts = queue.stats()
            if counts.get("completed", 0) >= n + history:
                break
            if counts.get("failed") or time.monotonic() > deadline:
                raise BenchmarkError(f"drain with {count} workers stalled: {counts}")
            time.sleep(0.1)
        records = [
            r
            for r in queue.storage.list_jobs(JobFilter(), limit=n + history + 1)
            if not r.id.startswith("done-")
        ]
    ledger.verify_ledger(f"drain ({count} workers)", book, (p["id"] for p in sent))
    first = min(r.started_at for r in records if r.started_at is not None)
    last = max(r.completed_at for r in records if r.completed_at is not None)
    return n / (last - first).total_seconds()


def run(args: argparse.Namespace) -> int:
    """Measure every state; print a Markdown table."""
    schema = f"gigq_bench_{uuid.uuid4().hex[:10]}"
    target = _with_query(args.pg_url, schema=schema)
    root = Path(tempfile.mkdtemp(prefix="gigq-bench-pgstats-", dir=args.tmp))
    rows = []
    try:
        for state in STATES:
            results: dict[str, list[float]] = {}
            for _ in range(args.repeat):
                for measure in ("claim", "drain1", "drain4"):
                    _drop_schema(args.pg_url, schema)
                    work = Path(tempfile.mkdtemp(dir=root))
                    if measure == "claim":
                        times = claim_times(target, state, args.jobs, args.claims, work)
                        value = statistics.median(times)
                        note = f"{value:.2f} ms per claim (mean {statistics.fmean(times):.2f})"
                    else:
                        value = drain(target, state, args.jobs, int(measure[-1]), work)
                        note = f"{value:,.0f} jobs/s"
                    print(f"{state:<15} {measure:<7} {note}", file=sys.stderr, flush=True)
                    results.setdefault(measure, []).append(value)
                    shutil.rmtree(work, ignore_errors=True)
            med = {k: statistics.median(v) for k, v in results.items()}
            rows.append((state, med["claim"], med["drain1"], med["drain4"]))
    except (BenchmarkError, ledger.ExactlyOnceError) as err:
        print(f"FAILED: {err}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(Exception):
            _drop_schema(args.pg_url, schema)
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"\n{args.jobs} jobs pending; claim: median of {args.claims} claims of one job; "
        f"median of {args.repeat} run(s)\n"
    )
    print("| statistics | claim (ms) | drain, 1 worker (jobs/s) | drain, 4 workers (jobs/s) |")
    print("|:--|--:|--:|--:|")
    for state, claim, drain1, drain4 in rows:
        print(f"| {state} | {claim:.2f} | {drain1:,.0f} | {drain4:,.0f} |")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pg_statistics",
        description="GigQ on PostgreSQL: claims and drains in two statistics states.",
    )
    parser.add_argument("--jobs", type=int, default=5000, help="jobs pending (default 5000)")
    parser.add_argument("--claims", type=int, default=200, help="claims timed (default 200)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each measure (median)")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("GIGQ_BENCH_POSTGRES_URL", DEFAULT_URL),
        help="PostgreSQL server (a throwaway schema is created in it)",
    )
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args(argv)
    if min(args.jobs, args.claims, args.repeat) < 1 or args.claims > args.jobs:
        parser.error("--jobs, --claims and --repeat must be at least 1, --claims <= --jobs")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m benchmarks.pg_statistics`."""
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
