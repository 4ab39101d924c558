"""Real workers on many processes against one PostgreSQL schema: `python -m gigq_cli --db
postgresql://... worker`, as users run them on many hosts.

The workers find the plugin through its `gigq` entry point, so the plugin must be installed
(`pip install -e plugins/gigq-postgres`; ci.sh does it). Every process is killed by its
pid in `finally`, and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from _pg import make_pm
from gigq_core import Job, JobQueue
from gigq_core.records import JobFilter, JobStatus

pytestmark = pytest.mark.process

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"

JOBS = 3000
WORKERS = 8
LEASE = 2.0
HEARTBEAT = 0.5
SWEEP = 0.5
#: Seconds the whole drain may take before the test fails (correctness, not speed).
BOUND = 120.0


def require_entry_point() -> None:
    names = {entry.name for entry in importlib.metadata.entry_points(group="gigq")}
    if "postgres" not in names:
        pytest.fail(
            "gigq-postgres is not installed, so `gigq worker` cannot open postgresql:// URLs; "
            "run `pip install -e plugins/gigq-postgres` (ci.sh does)",
            pytrace=False,
        )


def start_worker(url: str, worker_id: str, log_dir: Path) -> subprocess.Popen[bytes]:
    """`python -m gigq_cli --db URL worker` with the test lease, heartbeat and sweep."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIGQ_")}
    env["GIGQ_SWEEP_INTERVAL"] = str(SWEEP)
    # D9: shared PostgreSQL wants an allow-list of job modules.
    env["GIGQ_ALLOWED_MODULES"] = "pg_jobs"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    command = [
        sys.executable, "-m", "gigq_cli", "--db", url, "worker",
        "--worker-id", worker_id, "--lease", str(LEASE), "--heartbeat", str(HEARTBEAT),
        "--polling-interval", "1",
    ]  # fmt: skip
    with open(log_dir / f"{worker_id}.log", "ab") as log:
        return subprocess.Popen(
            command,
            cwd=HERE,  # the job module is imported from the current directory
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )


def session_members(session: int) -> list[int]:
    """Live pids of a session we started (a worker and the job processes it forked)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            found.append(int(entry))
    return found


def kill_session(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a worker and every process of its session, each by its pid."""
    if process.pid == os.getsid(0):
        raise ValueError("refusing to kill the test's own session")
    for pid in [process.pid, *session_members(process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def wait_until(predicate, bound: float, what: str, state=None) -> None:
    """Poll `predicate` until it holds; fail after `bound` s, saying what `state()` was."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    seen = f" (last seen: {state()})" if state is not None else ""
    pytest.fail(f"timed out after {bound:g} s waiting until {what}{seen}", pytrace=False)


def ledger_counts(ledger: Path) -> Counter[str]:
    if not ledger.exists():
        return Counter()
    return Counter(line.split()[0] for line in ledger.read_text().splitlines() if line)


def test_eight_workers_drain_3000_jobs_exactly_once_and_rescue_a_killed_one(
    pg_url, pg_server, pg_schema, tmp_path
):
    require_entry_point()
    ledger = tmp_path / "ledger"
    url = pg_url
    queue = JobQueue(url, plugin_manager=make_pm())
    workers: dict[str, subprocess.Popen[bytes]] = {}
    started = time.monotonic()
    try:
        held = queue.submit(
            Job("hold", "pg_jobs:hold", params={"ledger": str(ledger), "seconds": 60}, priority=9)
        )
        ids = queue.submit_many(
            [
                Job(f"job-{n}", "pg_jobs:work", params={"ledger": str(ledger), "ms": n % 3})
                for n in range(JOBS)
            ]
        )
        for number in range(1, WORKERS + 1):
            workers[f"w{number}"] = start_worker(url, f"w{number}", tmp_path)

        wait_until(lambda: ledger_counts(ledger)[held] >= 1, 60, "the held job has started")
        owner = queue.storage.get(held)
        assert owner is not None and owner.status is JobStatus.RUNNING
        victim = owner.worker_id or ""
        kill_session(workers.pop(victim))

        def drained() -> bool:
            counts = queue.storage.count(JobFilter())
            return counts.get("completed", 0) == JOBS + 1

        wait_until(
            drained,
            BOUND,
            f"all {JOBS + 1} jobs completed",
            lambda: queue.storage.count(JobFilter()),
        )
        elapsed = time.monotonic() - started
    finally:
        for process in workers.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in workers.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
            kill_session(process)
        queue.close()

    counts = ledger_counts(ledger)
    duplicates = {job_id: n for job_id, n in counts.items() if n != 1 and job_id != held}
    missing = [job_id for job_id in ids if counts[job_id] == 0]
    print(
        f"\n{JOBS} jobs, {WORKERS} workers, 1 killed ({victim}): {len(counts)} ran, "
        f"{len(duplicates)} duplicates, {len(missing)} missing, {elapsed:.1f} s"
    )
    assert missing == []
    assert duplicates == {}
    # The killed worker's job ran twice: the killed attempt, then the rescued one.
    assert counts[held] == 2
    with JobQueue(url, plugin_manager=make_pm()) as check:
        record = check.storage.get(held)
        assert record is not None and record.status is JobStatus.COMPLETED
        assert record.attempts == 2
        assert [e.status for e in check.storage.executions(held)] == ["lost", "completed"]
        assert check.storage.count(JobFilter()) == {"completed": JOBS + 1}
    with psycopg.connect(pg_server) as conn:
        [(completions,)] = conn.execute(
            f"SELECT count(*) FROM \"{pg_schema}\".job_executions WHERE status = 'completed'"
        ).fetchall()
        [(twice,)] = conn.execute(
            f'SELECT count(*) FROM (SELECT job_id FROM "{pg_schema}".job_executions'
            " WHERE status = 'completed' GROUP BY job_id HAVING count(*) > 1) t"
        ).fetchall()
    assert completions == JOBS + 1
    assert twice == 0


def test_workers_ride_out_dropped_connections_without_losing_or_doubling_a_job(
    pg_url, pg_server, pg_schema, tmp_path
):
    require_entry_point()
    jobs, drops = 600, 6
    application = f"gigq-drop-{os.getpid()}"
    url = f"{pg_url}&application_name={application}"
    ledger = tmp_path / "ledger"
    queue = JobQueue(pg_url, plugin_manager=make_pm())
    workers: list[subprocess.Popen[bytes]] = []
    terminated = 0
    try:
        ids = queue.submit_many(
            [
                # A claim cut off before its acknowledgement counts an attempt that never
                # ran (the job comes back through its lease), so allow a few (as chaos does).
                Job(
                    f"job-{n}",
                    "pg_jobs:work",
                    params={"ledger": str(ledger), "ms": 5},
                    max_attempts=10,
                )
                for n in range(jobs)
            ]
        )
        workers = [start_worker(url, f"d{n}", tmp_path) for n in range(1, 4)]
        wait_until(lambda: len(ledger_counts(ledger)) >= 50, 60, "the workers have started")
        with psycopg.connect(pg_server, autocommit=True) as conn:
            for _ in range(drops):
                # As a server restart or a network cut would: every session of the workers.
                terminated += len(
                    conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE application_name = %s",
                        (application,),
                    ).fetchall()
                )
                time.sleep(0.4)
        wait_until(
            lambda: queue.storage.count(JobFilter()).get("completed", 0) == jobs,
            BOUND,
            f"all {jobs} jobs completed",
            lambda: queue.storage.count(JobFilter()),
        )
        alive = [process.poll() is None for process in workers]
    finally:
        for process in workers:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
            kill_session(process)
        queue.close()

    counts = ledger_counts(ledger)
    extra = sum(n - 1 for n in counts.values())
    print(f"\n{jobs} jobs, 3 workers, {terminated} sessions ended: {extra} extra executions")
    assert terminated >= drops
    assert alive == [True, True, True], "a worker died of a dropped connection"
    assert [job_id for job_id in ids if counts[job_id] == 0] == []
    with psycopg.connect(pg_server) as conn:
        [(twice,)] = conn.execute(
            f'SELECT count(*) FROM (SELECT job_id FROM "{pg_schema}".job_executions'
            " WHERE status = 'completed' GROUP BY job_id HAVING count(*) > 1) t"
        ).fetchall()
    assert twice == 0
    # A claim whose commit was cut off is rescued after its lease: the job runs once, later.
    # Only a completion lost past the retry deadline could run a job twice.
    assert extra <= terminated
