"""`python -m benchmarks.postgres`: GigQ on PostgreSQL beside GigQ on SQLite, same run.

Measures, on each storage:

- drain throughput with 1 and with 4 worker processes (`gigq worker`, default process
  executor, concurrency 1 each): the workers are started and registered first, then N no-op
  jobs are submitted in one transaction; the time runs from the first job's start to the
  last job's completion, as the job records say (`started_at`, `completed_at`), so process
  start-up does not count. Every id must be in the ledger exactly once.
- submit-to-start latency with one idle worker: jobs submitted one at a time, a pause
  between them; p50 and p99 of (job start - submit call).

Prints a Markdown table with the PostgreSQL/SQLite ratio. Needs gigq-postgres installed and
a server (default `postgresql://postgres@127.0.0.1:5432/test`, or `--pg-url` /
`GIGQ_BENCH_POSTGRES_URL`); each run works in a throwaway schema, dropped at the end. Exit 1
when a job ran twice or never, or a worker failed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from benchmarks import ledger
from benchmarks.common import ROOT, BenchmarkError, payloads
from benchmarks.jobs import noop, stamp
from benchmarks.ledger import ExactlyOnceError

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
POLLING_INTERVAL = 0.05


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIGQ_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["GIGQ_DURABILITY"] = "full"
    return env


@contextlib.contextmanager
def workers(target: str, count: int, log_dir: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` `gigq worker` processes on `target`, registered before this yields; stopped
    with SIGTERM (then SIGKILL) afterwards, each by its own process group."""
    from gigq import JobQueue

    procs: list[subprocess.Popen[bytes]] = []
    try:
        for number in range(count):
            log = (log_dir / f"worker-{number}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "gigq_cli",
                        "--db",
                        target,
                        "worker",
                        "--worker-id",
                        f"bench-{number}-{uuid.uuid4().hex[:6]}",
                        "--polling-interval",
                        str(POLLING_INTERVAL),
                        "--log-level",
                        "WARNING",
                    ],
                    cwd=ROOT,
                    env=_env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            log.close()
        deadline = time.monotonic() + 60
        with JobQueue(target, durability="full") as queue:
            while len([w for w in queue.workers() if w.stopped_at is None]) < count:
                for proc in procs:
                    if proc.poll() is not None:
                        raise BenchmarkError(
                            f"a worker on {target} exited with {proc.returncode} at start-up"
                        )
                if time.monotonic() > deadline:
                    raise BenchmarkError(f"{count} workers did not register within 60 s")
                time.sleep(0.05)
        time.sleep(0.5)  # let them reach their idle wait
        yield procs
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def drain(target: str, n: int, count: int, workdir: Path) -> float:
    """Seconds from the first start to the last completion of `n` jobs run by `count`
    worker processes (exactly-once checked)."""
    from gigq import Job, JobQueue
    from gigq_core.records import JobFilter

    book = workdir / "ledger"
    sent = payloads(n, book)
    with workers(target, count, workdir), JobQueue(target, durability="full") as queue:
        queue.submit_many([Job("noop", noop, params=p) for p in sent])
        deadline = time.monotonic() + 60 + n * 0.05
        while True:
            counts = queue.stats()
            if counts.get("completed", 0) >= n:
                break
            if counts.get("failed") or counts.get("timeout") or time.monotonic() > deadline:
                raise BenchmarkError(f"drain on {target} with {count} workers stalled: {counts}")
            time.sleep(0.1)
        records = queue.storage.list_jobs(JobFilter(), limit=n + 1)
    ledger.verify_ledger(f"drain ({count} workers)", book, (p["id"] for p in sent))
    first = min(r.started_at for r in records if r.started_at is not None)
    last = max(r.completed_at for r in records if r.completed_at is not None)
    return (last - first).total_seconds()


def latency(target: str, jobs: int, gap: float, workdir: Path) -> list[float]:
    """Submit-to-start latencies in ms with one idle worker, one submit every `gap` s."""
    from gigq import Job, JobQueue

    book = workdir / "stamps"
    sent: dict[str, float] = {}
    with workers(target, 1, workdir), JobQueue(target, durability="full") as queue:
        for _ in range(jobs):
            job = Job("stamp", stamp, params={"ledger": str(book)})
            job.params["id"] = job.id
            before = time.time()
            queue.submit(job)
            sent[job.id] = before
            time.sleep(gap)
        deadline = time.monotonic() + 30
        lines: list[str] = []
        while time.monotonic() < deadline:
            lines = ledger.read(book)
            if len(lines) >= jobs:
                break
            time.sleep(0.05)
    started = dict(line.split() for line in lines)
    ledger.verify("latency", list(sent), [line.split()[0] for line in lines])
    return sorted((float(started[i]) - t) * 1000 for i, t in sent.items())


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values."""
    index = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def _drop_schema(server: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _with_query(url: str, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


def render(rows: list[tuple[str, str, float, float, bool]]) -> str:
    """Markdown: measure | SQLite | PostgreSQL | PostgreSQL/SQLite."""
    header = ("measure", "SQLite", "PostgreSQL", "PostgreSQL / SQLite")
    body = []
    for name, unit, lite, pg, higher_is_better in rows:
        ratio = pg / lite if lite else float("inf")
        note = "faster" if (ratio > 1) == higher_is_better else "slower"
        body.append((name, f"{lite:,.1f} {unit}", f"{pg:,.1f} {unit}", f"{ratio:.2f}x ({note})"))
    widths = [max(len(r[i]) for r in (header, *body)) for i in range(4)]

    def line(cells: tuple[str, ...]) -> str:
        return (
            "| "
            + " | ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    rule = (
        "|"
        + "|".join(
            ":" + "-" * (w + 1) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)
        )
        + "|"
    )
    return "\n".join([line(header), rule, *(line(r) for r in body)])


def run(args: argparse.Namespace) -> int:
    """Measure both storages, print the table; the exit code."""
    schema = f"gigq_bench_{uuid.uuid4().hex[:10]}"
    root = Path(tempfile.mkdtemp(prefix="gigq-bench-pg-", dir=args.tmp))
    results: dict[str, dict[str, list[float]]] = {"sqlite": {}, "postgres": {}}
    try:
        for repeat in range(args.repeat):
            for storage in ("sqlite", "postgres") if repeat % 2 == 0 else ("postgres", "sqlite"):
                for measure in ("drain1", "drain4", "latency"):
                    work = Path(tempfile.mkdtemp(dir=root))
                    if storage == "sqlite":
                        target = str(work / "gigq.db")
                    else:
                        _drop_schema(args.pg_url, schema)
                        target = _with_query(args.pg_url, schema=schema)
                    if measure == "latency":
                        values = latency(target, args.latency_jobs, args.gap, work)
                        got = {
                            "p50": statistics.median(values),
                            "p99": percentile(values, 0.99),
                        }
                        _say(
                            f"repeat {repeat + 1} {storage:<8} latency p50 {got['p50']:.1f} ms,"
                            f" p99 {got['p99']:.1f} ms"
                        )
                    else:
                        count = 1 if measure == "drain1" else 4
                        seconds = drain(target, args.jobs, count, work)
                        got = {measure: args.jobs / seconds}
                        _say(
                            f"repeat {repeat + 1} {storage:<8} drain, {count} worker(s): "
                            f"{args.jobs / seconds:,.0f} jobs/s ({seconds:.2f} s)"
                        )
                    for key, value in got.items():
                        results[storage].setdefault(key, []).append(value)
                    shutil.rmtree(work, ignore_errors=True)
    except (BenchmarkError, ExactlyOnceError) as err:
        _say(f"FAILED: {err}")
        return 1
    finally:
        with contextlib.suppress(Exception):
            _drop_schema(args.pg_url, schema)
        shutil.rmtree(root, ignore_errors=True)

    def med(storage: str, key: str) -> float:
        return statistics.median(results[storage][key])

    rows = [
        ("drain, 1 worker", "jobs/s", med("sqlite", "drain1"), med("postgres", "drain1"), True),
        ("drain, 4 workers", "jobs/s", med("sqlite", "drain4"), med("postgres", "drain4"), True),
        ("submit-to-start p50", "ms", med("sqlite", "p50"), med("postgres", "p50"), False),
        ("submit-to-start p99", "ms", med("sqlite", "p99"), med("postgres", "p99"), False),
    ]
    print(
        f"\n{args.jobs} no-op jobs per drain, {args.latency_jobs} latency jobs, median of "
        f"{args.repeat} run(s); process executor; SQLite WAL synchronous=FULL, PostgreSQL "
        f"synchronous_commit=on (server {_server_version(args.pg_url)}, local TCP)\n"
    )
    print(render(rows))
    print(flush=True)
    return 0


def _server_version(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else "?"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.postgres",
        description="GigQ on PostgreSQL beside GigQ on SQLite: drain throughput and latency.",
    )
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per drain (default 2000)")
    parser.add_argument("--latency-jobs", type=int, default=200, help="(default 200)")
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between latency submits")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each measure (median)")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("GIGQ_BENCH_POSTGRES_URL", DEFAULT_URL),
        help="PostgreSQL server (a throwaway schema is created in it)",
    )
    parser.add_argument(
        "--tmp",
        type=Path,
        default=Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir()),
        help="directory for the SQLite files and ledgers (local disk)",
    )
    args = parser.parse_args(argv)
    if min(args.jobs, args.latency_jobs, args.repeat) < 1:
        parser.error("--jobs, --latency-jobs and --repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m benchmarks.postgres`."""
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
