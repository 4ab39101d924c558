"""Crash points on PostgreSQL (docs/guarantees.md): a client process dies (`os._exit(137)`,
through the test-only GIGQ_TEST_CRASH of gigq_sql.crash) with its statements sent and its
transaction open, right before the COMMIT, or right after it, of submit, claim, finish,
rescue and cancel. The server rolls a dead client's transaction back: the state left is the
one expected of that point (all of the transaction or none of it), and a fresh worker then
drains the queue to the expected end, every execution accounted for in the ledger.

Each point has a schema of its own (dropped at the end) and its own processes, a few at a
time. The workers find the plugin through its `gigq` entry point, as users run them.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import attrs
import psycopg
import pytest

from _pg import make_pm, with_schema
from gigq_core import Job, JobQueue

pytestmark = [pytest.mark.process, pytest.mark.timeout(90)]

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
LEASE = 2.0
HEARTBEAT = 0.5
SWEEP = 0.5

#: (status, attempts, execution statuses) of a job; None: the job must not exist.
State = tuple[str, int, tuple[str, ...]] | None

DONE = ("completed", 1, ("completed",))
RESCUED_DONE = ("completed", 2, ("lost", "completed"))
UNTOUCHED = ("pending", 0, ())
HELD = ("running", 1, ("running",))
CANCELLED = ("cancelled", 0, ())


@attrs.frozen
class Point:
    """One crash point: the setup, who dies where (a worker, or a `_pg_client` action), and
    job 0's state right after the crash and after the drain."""

    crash: str
    setup: str
    actor: str
    after_crash: State
    after_drain: State


POINTS = [
    Point("submit:before", "nothing", "submit", None, None),
    Point("submit:after", "nothing", "submit", UNTOUCHED, DONE),
    Point("claim:before", "work", "worker", UNTOUCHED, DONE),
    Point("claim:after", "work", "worker", HELD, RESCUED_DONE),
    Point("finish:before", "work", "worker", HELD, RESCUED_DONE),
    Point("finish:after", "work", "worker", DONE, DONE),
    Point("rescue:before", "ghost", "worker", HELD, RESCUED_DONE),
    Point("rescue:after", "ghost", "worker", ("pending", 1, ("lost",)), RESCUED_DONE),
    Point("cancel:before", "work", "cancel", UNTOUCHED, DONE),
    Point("cancel:after", "work", "cancel", CANCELLED, CANCELLED),
]


def environment(**extra: str) -> dict[str, str]:
    """A child's environment: no GIGQ_* from outside, the test sweep, the job modules
    allowed (D9), the plugin's source on the import path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIGQ_")}
    env["GIGQ_SWEEP_INTERVAL"] = str(SWEEP)
    env["GIGQ_ALLOWED_MODULES"] = "pg_jobs"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def spawn(command: list[str], log: Path, **env: str) -> subprocess.Popen[bytes]:
    """Start a process from this directory (the job module and the client are imported
    from it), in its own session, its stderr to `log`."""
    with open(log, "ab") as err:
        return subprocess.Popen(
            command,
            cwd=HERE,
            env=environment(**env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )


def start_worker(url: str, worker_id: str, tmp: Path, **env: str) -> subprocess.Popen[bytes]:
    """`python -m gigq_cli --db URL worker` with the test lease and heartbeat."""
    command = [
        sys.executable, "-m", "gigq_cli", "--db", url, "worker",
        "--worker-id", worker_id, "--lease", str(LEASE), "--heartbeat", str(HEARTBEAT),
        "--polling-interval", "0.5",
    ]  # fmt: skip
    return spawn(command, tmp / f"{worker_id}.log", **env)


def end(process: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM a process we started (then SIGKILL its session); its exit status."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    return process.returncode


def wait_until(predicate: Callable[[], bool], bound: float, what: str) -> None:
    deadline = time.monotonic() + bound
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {bound:g} s waiting until {what}")
        time.sleep(0.1)


@contextlib.contextmanager
def opened(url: str) -> Iterator[JobQueue]:
    with JobQueue(url, plugin_manager=make_pm()) as queue:
        yield queue


def state(url: str, job_id: str) -> State:
    """The job's (status, attempts, execution statuses) as the server has them now."""
    with opened(url) as queue:
        job = queue.storage.get(job_id)
        if job is None:
            return None
        runs = tuple(run.status for run in queue.storage.executions(job_id))
        return job.status.value, job.attempts, runs


def registered(url: str, worker_id: str) -> bool:
    with opened(url) as queue:
        return any(info.id == worker_id for info in queue.storage.list_workers())


def set_up(kind: str, url: str, ledger: Path) -> str:
    """The setup's job id (the job exists unless the setup is "nothing")."""
    job = Job("work", "pg_jobs:work", params={"ledger": str(ledger)})
    if kind == "nothing":
        return job.id
    with opened(url) as queue:
        queue.submit(job)
        if kind == "ghost":
            # A worker that is no process at all claims the job, with a lease already over.
            [held] = queue.storage.claim("ghost", 1, datetime.now(UTC), 0.01)
            assert held.id == job.id
    return job.id


def ledger_problems(url: str, ledger: Path, job_id: str) -> list[str]:
    """Every execution that began is on record, at most one beyond one per job (the one
    the crash interrupted), and a completed job completed exactly once, last."""
    lines = ledger.read_text().splitlines() if ledger.exists() else []
    ran = Counter(line.split()[0] for line in lines)
    problems = []
    if set(ran) - {job_id}:
        problems.append(f"the ledger names unknown jobs {sorted(set(ran) - {job_id})}")
    with opened(url) as queue:
        job = queue.storage.get(job_id)
        runs = [run.status for run in queue.storage.executions(job_id)] if job else []
    if ran[job_id] > len(runs):
        problems.append(f"{ran[job_id]} executions began, {len(runs)} on record")
    if ran[job_id] > 2:
        problems.append(f"{ran[job_id]} executions: more than one extra")
    completed = job is not None and job.status.value == "completed"
    if completed and (runs.count("completed") != 1 or runs[-1] != "completed"):
        problems.append(f"completed with executions {runs}")
    if "running" in runs:
        problems.append("an execution record left running")
    return problems


def run_point(point: Point, server: str, tmp: Path) -> str:
    """Set up, crash, check, drain, check, in a schema of its own; a one-line summary."""
    tmp.mkdir()
    schema = f"gigq_crash_{uuid.uuid4().hex[:12]}"
    url, ledger = with_schema(server, schema), tmp / "ledger"
    started = time.monotonic()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with opened(url):
            pass  # creates the schema
        job_id = set_up(point.setup, url, ledger)
        crash = {"GIGQ_TEST_CRASH": point.crash}
        if point.actor == "worker":
            actor = start_worker(url, "crasher", tmp, **crash)
        else:
            command = [sys.executable, "-m", "_pg_client", point.actor, url, job_id, str(ledger)]
            actor = spawn(command, tmp / "client.log", **crash)
        processes.append(actor)
        code = actor.wait(timeout=30)
        assert code == 137, f"the {point.actor} exited {code}, not at the crash point"
        seen = state(url, job_id)
        assert seen == point.after_crash, f"right after the crash at {point.crash}: {seen}"
        drain = start_worker(url, "drain", tmp)
        processes.append(drain)
        # A transaction the server had not rolled back would keep its row locks, and the
        # fresh worker (which skips locked rows) would never get the job.
        wait_until(
            lambda: state(url, job_id) in (None, DONE, RESCUED_DONE, CANCELLED),
            30,
            f"the fresh worker drained {point.crash}",
        )
        # Registered: it has its signal handlers, and stops cleanly on SIGTERM.
        wait_until(lambda: registered(url, "drain"), 30, "the fresh worker started")
        assert end(drain) == 0, (tmp / "drain.log").read_text()
        final = state(url, job_id)
        assert final == point.after_drain, f"after the drain of {point.crash}: {final}"
        problems = ledger_problems(url, ledger, job_id)
        assert not problems, f"{point.crash}: " + "; ".join(problems)
    finally:
        for process in processes:
            end(process)
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    psycopg.sql.Identifier(schema)
                )
            )
    return f"[pg crash-point {point.crash}] {final} time={time.monotonic() - started:.1f}s"


def test_crash_points_on_postgresql(pg_server: str, tmp_path: Path) -> None:
    """Every point, a few at a time, each in its own schema and processes."""
    names = {entry.name for entry in importlib.metadata.entry_points(group="gigq")}
    if "postgres" not in names:
        pytest.fail(
            "gigq-postgres is not installed, so `gigq worker` cannot open postgresql:// URLs; "
            "run `pip install -e plugins/gigq-postgres` (ci.sh does)",
            pytrace=False,
        )
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=5) as pool:
        futures = {
            point.crash: pool.submit(run_point, point, pg_server, tmp_path / point.crash)
            for point in POINTS
        }
    failures = []
    for name, future in futures.items():
        error = future.exception()
        if error is None:
            print(future.result())
        else:
            print(f"[pg crash-point {name}] FAILED: {error}")
            failures.append(f"{name}: {error}")
    print(
        f"[pg crash-points] points={len(POINTS)} failed={len(failures)} "
        f"time={time.monotonic() - started:.1f}s"
    )
    assert not failures, "\n".join(failures)
