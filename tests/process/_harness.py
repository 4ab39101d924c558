"""Helpers of the multi-process tests: start and stop real workers, wait, read the ledger,
and the ledger check of docs/guarantees.md."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs

from gigq_core import Job, JobQueue, make_plugin_manager

ROOT = Path(__file__).resolve().parents[2]

#: The test settings: short leases, so rescues happen within seconds.
LEASE = 2.0
HEARTBEAT = 0.5
SWEEP = 0.5

T = TypeVar("T")

FINAL = frozenset({"completed", "failed", "cancelled", "timeout"})


def environment(**extra: str) -> dict[str, str]:
    """The environment of a worker: no GIGQ_* from outside, the test sweep interval, and
    the project root on the import path (for `tests.process.chaos_jobs`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIGQ_")}
    env["GIGQ_SWEEP_INTERVAL"] = str(SWEEP)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@attrs.define
class WorkerProcess:
    """A `gigq worker` started by a test (the leader of its own session)."""

    worker_id: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        """The supervisor's pid (also the id of its session)."""
        return self.process.pid

    def stderr(self) -> str:
        """What the worker has logged so far."""
        return self.log.read_text(errors="replace")


def start_worker(
    db: str | Path,
    log_dir: str | Path,
    worker_id: str,
    *args: str,
    concurrency: int = 1,
    grace: float | None = None,
    polling_interval: float = 0.5,
    log_level: str = "INFO",
    env: dict[str, str] | None = None,
) -> WorkerProcess:
    """Start `python -m gigq_cli --db DB worker` with the test lease, heartbeat and sweep;
    its stderr goes to LOG_DIR/WORKER_ID.log (a file, so a chatty worker never blocks);
    `env` adds environment variables (e.g. GIGQ_TEST_CRASH)."""
    command = [
        sys.executable, "-m", "gigq_cli", "--db", str(db), "worker",
        "--worker-id", worker_id,
        "--lease", str(LEASE), "--heartbeat", str(HEARTBEAT),
        "--polling-interval", str(polling_interval),
        "--concurrency", str(concurrency),
        "--log-level", log_level,
    ]  # fmt: skip
    if grace is not None:
        command += ["--grace", str(grace)]
    command += list(args)
    log = Path(log_dir) / f"{worker_id}.log"
    with open(log, "ab") as err:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=environment(**(env or {})),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    return WorkerProcess(worker_id=worker_id, process=process, log=log)


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, session) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    return fields[0], int(fields[1]), int(fields[3])


def is_alive(pid: int) -> bool:
    """True while `pid` runs. A zombie counts as gone: here pid 1 never reaps orphans."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def session_members(session: int) -> list[int]:
    """Live pids in a session: a worker and the pool children (and their children) it
    forked, which stay in its session even after it dies."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _stat(int(entry))
        if stat is not None and stat[2] == session and stat[0] != "Z":
            found.append(int(entry))
    return found


def kill_session(session: int) -> None:
    """SIGKILL every process of a session we started (each by its pid)."""
    if session == os.getsid(0):
        raise ValueError("refusing to kill the test's own session")
    for pid in session_members(session):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def stop(worker: WorkerProcess | subprocess.Popen[bytes], bound: float = 15.0) -> int | None:
    """SIGTERM, then SIGKILL if it has not exited within `bound` seconds; then kill
    whatever is left of its session (orphaned pool children). Returns the exit code."""
    process = worker.process if isinstance(worker, WorkerProcess) else worker
    if isinstance(worker, WorkerProcess):
        # A worker SIGTERMed before its interpreter installed the handler dies of the signal
        # (-15) instead of shutting down: wait (bounded) until it catches SIGTERM.
        deadline = time.monotonic() + bound
        while (
            process.poll() is None
            and not _catches_sigterm(process.pid)
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    return _reap(process, bound)


def _catches_sigterm(pid: int) -> bool:
    """True once the process has a SIGTERM handler (Linux: SigCgt in /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True  # gone, or not Linux: nothing to wait for
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return True


def _reap(process: subprocess.Popen[bytes], bound: float) -> int | None:
    """Wait up to `bound` s, SIGKILL if still running, then clear its session."""
    try:
        process.wait(timeout=bound)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(timeout=10)
    kill_session(process.pid)
    return process.returncode


def kill_counting(db: str | Path, worker: WorkerProcess) -> int:
    """SIGKILL the worker's supervisor, first stopped (SIGSTOP) so that nothing it does
    changes the store between the count and the kill; returns how many jobs it had started
    and not yet recorded the end of (running in the store under its id, its reserved jobs
    not included): exactly the jobs this kill can make run again."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(worker.pid, signal.SIGSTOP)
    with read_only(db) as conn:
        (started,) = conn.execute(
            "SELECT count(*) FROM jobs WHERE status = 'running' AND started_at IS NOT NULL"
            " AND worker_id = ?",
            (worker.worker_id,),
        ).fetchone()
    kill(worker)
    return int(started)


def kill(worker: WorkerProcess) -> None:
    """SIGKILL the worker's supervisor only (its pool children live on, orphaned)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(worker.pid, signal.SIGKILL)
    worker.process.wait(timeout=10)


def submit(db: str | Path, jobs: Sequence[Job]) -> list[str]:
    """Submit jobs in one transaction from the test process; returns their ids."""
    pm = make_plugin_manager(load_entrypoints=False)
    with JobQueue(str(db), plugin_manager=pm) as queue:
        return queue.submit_many(jobs)


def chaos_job(function: str, **params: Any) -> Job:
    """A job calling `tests.process.chaos_jobs:<function>`; `max_attempts` and `timeout`
    are taken out of the params as job options."""
    options = {k: params.pop(k) for k in ("max_attempts", "timeout") if k in params}
    return Job(function, f"tests.process.chaos_jobs:{function}", params=params, **options)


class Fleet:
    """The processes one test started; leaving the `with` block stops them all (SIGTERM,
    then SIGKILL), each by its pid, with whatever is left of their sessions."""

    def __init__(self, db: str | Path, log_dir: str | Path) -> None:
        self.db = db
        self.log_dir = log_dir
        self.workers: list[WorkerProcess] = []
        self.others: list[subprocess.Popen[bytes]] = []
        self._count = 0

    def start(self, worker_id: str | None = None, *args: str, **options: Any) -> WorkerProcess:
        """Start a worker (see `start_worker`), named w1, w2, ... unless given an id."""
        self._count += 1
        worker = start_worker(
            self.db, self.log_dir, worker_id or f"w{self._count}", *args, **options
        )
        self.workers.append(worker)
        return worker

    def spawn(
        self, command: Sequence[str], env: dict[str, str] | None = None, **options: Any
    ) -> subprocess.Popen[bytes]:
        """Start another process (a submitter) in its own session, from the project root;
        `env` adds environment variables, `options` go to Popen."""
        process = subprocess.Popen(
            list(command),
            cwd=ROOT,
            env=environment(**(env or {})),
            start_new_session=True,
            **options,
        )
        self.others.append(process)
        return process

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        for process in [w.process for w in self.workers] + self.others:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in [w.process for w in self.workers] + self.others:
            _reap(process, bound=max(0.0, deadline - time.monotonic()))


def wait_until(
    predicate: Callable[[], T], timeout: float, message: str = "", interval: float = 0.05
) -> T:
    """Poll until `predicate()` is truthy; returns its value, or fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {message or predicate}"
            )
        time.sleep(interval)


@attrs.frozen
class Execution:
    """One line of the ledger: a job execution that began."""

    job_id: str
    attempt: int
    pid: int


def read_ledger(path: str | Path) -> list[Execution]:
    """Every execution recorded in the ledger, in order; a malformed line fails the test."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    entries = []
    for line in text.splitlines():
        job_id, attempt, pid = line.split(" ")
        entries.append(Execution(job_id, int(attempt), int(pid)))
    assert text == "" or text.endswith("\n"), "the ledger ends in a torn line"
    return entries


@contextlib.contextmanager
def read_only(db: str | Path) -> Iterator[sqlite3.Connection]:
    """A read-only sqlite3 connection to the test's database (never a plain open())."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        yield conn
    finally:
        conn.close()


def status_counts(db: str | Path) -> dict[str, int]:
    """Jobs per status."""
    with read_only(db) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())


def is_registered(db: str | Path, worker_id: str) -> bool:
    """True once the worker has registered (it has installed its signal handlers by then)."""
    with read_only(db) as conn:
        row = conn.execute("SELECT 1 FROM workers WHERE id = ?", (worker_id,)).fetchone()
        return row is not None


def running_workers(db: str | Path) -> set[str]:
    """Ids of the workers that hold a running job."""
    with read_only(db) as conn:
        rows = conn.execute("SELECT DISTINCT worker_id FROM jobs WHERE status = 'running'")
        return {worker_id for (worker_id,) in rows}


def job_row(db: str | Path, job_id: str) -> dict[str, Any]:
    """The job's columns by name."""
    with read_only(db) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        assert row is not None, f"job {job_id} does not exist"
        return dict(row)


def executions(db: str | Path, job_id: str) -> list[dict[str, Any]]:
    """The job's execution records, oldest first; a running attempt's, which the SQLite
    adapter writes only when the attempt ends, from its job's row."""
    with read_only(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT * FROM job_executions WHERE job_id = ? ORDER BY started_at, rowid",
            (job_id,),
        ).fetchall()
        found = [dict(row) for row in rows]
        running = conn.execute(
            "SELECT attempts AS attempt, worker_id, token, started_at FROM jobs"
            " WHERE id = ? AND status = 'running'",
            (job_id,),
        ).fetchone()
        if running is not None and all(run["token"] != running["token"] for run in found):
            found.append({"job_id": job_id, "status": "running", **dict(running)})
        return found


def all_final(db: str | Path, job_ids: Iterable[str] | None = None) -> bool:
    """True when every job (or every one of `job_ids`) is in a final state."""
    with read_only(db) as conn:
        if job_ids is None:
            (left,) = conn.execute(
                "SELECT count(*) FROM jobs WHERE status IN ('pending', 'running')"
            ).fetchone()
            return bool(left == 0)
        ids = json.dumps(list(job_ids))
        (left,) = conn.execute(
            "SELECT count(*) FROM jobs WHERE id IN (SELECT value FROM json_each(?))"
            " AND status IN ('pending', 'running')",
            (ids,),
        ).fetchone()
        return bool(left == 0)


@attrs.frozen(kw_only=True)
class LedgerSummary:
    """What the ledger check counted."""

    jobs: int
    statuses: dict[str, int]
    #: Executions recorded in the ledger (runs that began).
    executions: int
    #: Executions beyond one per job that ran.
    extra: int
    allowed_extra: int
    faults: int
    #: Execution records ended "lost" (rescues), and "handed_back".
    lost: int
    handed_back: int
    problems: tuple[str, ...]

    def line(self, name: str, seed: Any, seconds: float, **more: Any) -> str:
        """The one-line summary: counts, seed, time."""
        statuses = ",".join(f"{k}={v}" for k, v in sorted(self.statuses.items()))
        extras = "".join(f" {k}={v}" for k, v in more.items())
        return (
            f"[{name}] jobs={self.jobs} {statuses} executions={self.executions}"
            f" extra={self.extra}/{self.allowed_extra} faults={self.faults} lost={self.lost}"
            f" handed_back={self.handed_back} problems={len(self.problems)}{extras}"
            f" seed={seed} time={seconds:.1f}s"
        )


def _id_problems(wanted: list[str], jobs: dict[str, dict[str, Any]], rows: int) -> list[str]:
    """The acknowledged ids against the `rows` stored: none twice, none lost, none extra."""
    problems = []
    if len(set(wanted)) != len(wanted):
        problems.append("a job id was acknowledged twice")
    if len(jobs) != rows:
        problems.append("two job rows share an id")
    missing = [job_id for job_id in wanted if job_id not in jobs]
    if missing:
        problems.append(f"{len(missing)} acknowledged job(s) lost, e.g. {missing[:3]}")
    unexpected = set(jobs) - set(wanted)
    if unexpected:
        problems.append(f"{len(unexpected)} job(s) nobody submitted")
    return problems


def _job_problems(
    job_id: str, job: dict[str, Any], runs: list[dict[str, Any]], ran: int
) -> list[str]:
    """One job against its execution records and its `ran` ledger lines."""
    problems = []
    if job["attempts"] > job["max_attempts"]:
        problems.append(f"{job_id}: attempts {job['attempts']} > {job['max_attempts']}")
    if ran > len(runs):
        problems.append(f"{job_id}: {ran} ledger lines, {len(runs)} executions")
    done = [run for run in runs if run["status"] == "completed"]
    if any(run["status"] == "running" for run in runs):
        problems.append(f"{job_id}: an execution record left running")
    if job["status"] != "completed":
        if done:
            problems.append(f"{job_id}: {job['status']} with a completed execution")
        return problems
    if ran == 0:
        problems.append(f"{job_id}: completed but never ran")
    if len(done) != 1:
        problems.append(f"{job_id}: {len(done)} completed executions")
    elif runs[-1] is not done[0]:
        problems.append(f"{job_id}: the completed execution is not the last one")
    elif done[0]["result"] != job["result"]:
        problems.append(f"{job_id}: the job's result is not its completed execution's")
    else:
        value = json.loads(job["result"]) if job["result"] else None
        if isinstance(value, dict) and value.get("attempt") != done[0]["attempt"]:
            problems.append(
                f"{job_id}: the result of attempt {value.get('attempt')} was stored as "
                f"attempt {done[0]['attempt']}'s (a stale completion accepted, "
                f"worker {done[0]['worker_id']})"
            )
    return problems


def ledger_check(
    db: str | Path,
    ledger: str | Path,
    faults: int,
    *,
    submitted: Sequence[str],
    per_fault: int = 1,
    allowed_extra: int | None = None,
    expect: str | None = "completed",
    name: str = "ledger",
    seed: Any = "-",
    started: float | None = None,
    **more: Any,
) -> LedgerSummary:
    """The ledger check of docs/guarantees.md, once every worker has stopped; prints the one-line
    summary, then fails with every problem found.

    Every submitted (acknowledged) job exists exactly once and nothing else does; none is
    running or pending: all are final (and `expect`, when given); each completed job ran,
    and has exactly one completed execution, its last, whose stored result came from that
    very attempt (no stale completion was accepted); no other job has a completed
    execution; no execution record is left running; the ledger names only known jobs and
    never more runs of a job than its execution records; attempts <= max_attempts; extra
    executions <= `allowed_extra` (what the test found really interrupted), or else
    `faults * per_fault`; `PRAGMA quick_check` is ok.
    """
    entries = read_ledger(ledger)
    wanted = list(submitted)
    with read_only(db) as conn:
        conn.row_factory = sqlite3.Row
        (check,) = conn.execute("PRAGMA quick_check").fetchone()
        rows = [
            dict(row)
            for row in conn.execute(
                "SELECT id, status, attempts, max_attempts, result, error FROM jobs"
            )
        ]
        by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in conn.execute(
            "SELECT job_id, attempt, worker_id, status, result FROM job_executions"
            " ORDER BY started_at, rowid"
        ):
            by_job[row["job_id"]].append(dict(row))
    jobs = {row["id"]: row for row in rows}
    problems: list[str] = []
    if check != "ok":
        problems.append(f"quick_check: {check}")
    problems += _id_problems(wanted, jobs, len(rows))
    statuses = Counter(job["status"] for job in jobs.values())
    for status in ("running", "pending"):
        if statuses[status]:
            problems.append(f"{statuses[status]} job(s) left {status}")
    if expect is not None and statuses != Counter({expect: len(jobs)}):
        problems.append(f"not all {expect}: {dict(statuses)}")

    ran = Counter(entry.job_id for entry in entries)
    unknown = set(ran) - set(jobs)
    if unknown:
        problems.append(f"the ledger names unknown jobs {sorted(unknown)[:3]}")
    for job_id, job in jobs.items():
        problems += _job_problems(job_id, job, by_job.get(job_id, []), ran[job_id])

    executed = sum(ran.values())
    extra = executed - sum(1 for job_id in jobs if ran[job_id])
    allowed = faults * per_fault if allowed_extra is None else allowed_extra
    if extra > allowed:
        problems.append(f"{extra} extra executions > {allowed} allowed")
    every_run = [run for runs in by_job.values() for run in runs]
    summary = LedgerSummary(
        jobs=len(jobs),
        statuses=dict(statuses),
        executions=executed,
        extra=extra,
        allowed_extra=allowed,
        faults=faults,
        lost=sum(run["status"] == "lost" for run in every_run),
        handed_back=sum(run["status"] == "handed_back" for run in every_run),
        problems=tuple(problems),
    )
    seconds = time.monotonic() - started if started is not None else 0.0
    print(summary.line(name, seed, seconds, **more))
    assert not problems, f"{len(problems)} problem(s): " + "; ".join(problems[:8])
    return summary


__all__ = [
    "HEARTBEAT",
    "LEASE",
    "ROOT",
    "SWEEP",
    "Execution",
    "Fleet",
    "LedgerSummary",
    "WorkerProcess",
    "all_final",
    "chaos_job",
    "environment",
    "executions",
    "is_alive",
    "is_registered",
    "job_row",
    "kill",
    "kill_counting",
    "kill_session",
    "ledger_check",
    "read_ledger",
    "read_only",
    "running_workers",
    "session_members",
    "start_worker",
    "status_counts",
    "stop",
    "submit",
    "wait_until",
]
