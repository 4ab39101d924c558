"""Crash points (docs/guarantees.md): a process dies (`os._exit(137)`, through the
test-only GIGQ_TEST_CRASH of gigq_sql.crash) right before or right after the COMMIT of
submit, claim, the start of a reserved (prefetched) job, heartbeat, finish (complete, retry,
fail, and a group commit of several outcomes), dependency release, cancel, rescue, requeue,
retention's prune and the space reclaim after it, worker register and deregister, queue
pause and resume, a key-value write, and `gigq migrate`'s import. The state it leaves is
the one expected of that point (all of the transaction or none of it), and a fresh worker
then drains the queue to the expected end, which the ledger check confirms."""

from __future__ import annotations

import contextlib
import io
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import pytest

from gigq_core import Job, JobQueue, make_plugin_manager
from gigq_core.records import Outcome
from tests.process._harness import (
    Fleet,
    all_final,
    chaos_job,
    executions,
    is_registered,
    ledger_check,
    read_only,
    start_worker,
    stop,
    submit,
    wait_until,
)

pytestmark = [pytest.mark.process, pytest.mark.timeout(90)]

#: (status, attempts, execution statuses) of a job; a status alone: that status, any
#: history; None: the job must not exist.
State = tuple[str, int, tuple[str, ...]] | str | None

#: The queue the pause points pause (their job 1 is in the default queue).
PAUSED = "q1"
#: The key-value entry the kv and import points write.
KV = ("crash", "key", "value")


@attrs.frozen
class Point:
    """One crash point: what is set up, who dies where, and what each job looks like after
    the crash and after the drain (jobs by their index in the setup); `facts`: what else
    the crash must have left (see `facts`); `worker`: options and environment of the
    worker that dies; `faults`: the executions beyond one per job the crash may cause."""

    crash: str
    setup: str
    actor: str  # "worker", a _client action ("submit", ...) or a CLI one ("pause", ...)
    after_crash: dict[int, State]
    after_drain: dict[int, State]
    variant: str = ""
    facts: dict[str, Any] = attrs.field(factory=dict)
    worker: tuple[str, ...] = ()
    env: dict[str, str] = attrs.field(factory=dict)
    faults: int = 1

    @property
    def id(self) -> str:
        return self.crash + (f"-{self.variant}" if self.variant else "")


DONE = ("completed", 1, ("completed",))
RESCUED_DONE = ("completed", 2, ("lost", "completed"))
UNTOUCHED = ("pending", 0, ())
HELD = ("running", 1, ("running",))
#: Claimed ahead by a prefetching worker, never started: nothing counted.
RESERVED = ("running", 0, ("running",))

#: Jobs of the "done" setup (completed, each with a long description, so that deleting
#: them frees whole pages).
OLD_JOBS = 5
OLD = range(OLD_JOBS)
#: Jobs of the "group" setup, which end together and are recorded in one commit.
GROUP = range(3)
#: Retention for the worker that prunes: every completed job is older than that.
PRUNING = {"GIGQ_RETENTION": "0.01"}


def every(jobs: range, value: State) -> dict[int, State]:
    """The same state for every job of `jobs`."""
    return dict.fromkeys(jobs, value)


POINTS = [
    Point("submit:before", "nothing", "submit", {0: None}, {0: None}),
    Point("submit:after", "nothing", "submit", {0: UNTOUCHED}, {0: DONE}),
    Point("claim:before", "work", "worker", {0: UNTOUCHED}, {0: DONE}),
    Point("claim:after", "work", "worker", {0: HELD}, {0: RESCUED_DONE}),
    # A prefetching worker ran job 0, claimed job 1 and reserved jobs 2 and 3 behind it;
    # it dies starting job 2 (job 1's outcome may not be recorded yet: it is rescued then).
    Point(
        "start:before",
        "fast",
        "worker",
        {2: RESERVED, 3: RESERVED},
        {2: DONE, 3: DONE},
        worker=("--prefetch-window", "1"),
        faults=2,
    ),
    Point(
        "start:after",
        "fast",
        "worker",
        {2: HELD, 3: RESERVED},
        {2: RESCUED_DONE, 3: DONE},
        worker=("--prefetch-window", "1"),
        faults=3,
    ),
    Point("heartbeat:before", "long", "worker", {0: HELD}, {0: RESCUED_DONE}),
    Point("heartbeat:after", "long", "worker", {0: HELD}, {0: RESCUED_DONE}),
    Point("finish:before", "work", "worker", {0: HELD}, {0: RESCUED_DONE}, "complete"),
    Point("finish:after", "work", "worker", {0: DONE}, {0: DONE}, "complete"),
    Point("finish:before", "fail_first", "worker", {0: HELD}, {0: RESCUED_DONE}, "retry"),
    Point(
        "finish:after",
        "fail_first",
        "worker",
        {0: ("pending", 1, ("failed",))},
        {0: ("completed", 2, ("failed", "completed"))},
        "retry",
    ),
    Point(
        "finish:before",
        "always_abort",
        "worker",
        {0: HELD},
        {0: ("failed", 2, ("lost", "failed"))},
        "fail",
    ),
    Point(
        "finish:after",
        "always_abort",
        "worker",
        {0: ("failed", 1, ("failed",))},
        {0: ("failed", 1, ("failed",))},
        "fail",
    ),
    # Three outcomes held for one group commit: all of them recorded, or none.
    Point(
        "finish:before",
        "group",
        "worker",
        every(GROUP, HELD),
        every(GROUP, RESCUED_DONE),
        "group",
        worker=("--concurrency", "3"),
        env={"GIGQ_FLUSH_INTERVAL": "1"},
        faults=len(GROUP),
    ),
    Point(
        "finish:after",
        "group",
        "worker",
        every(GROUP, DONE),
        every(GROUP, DONE),
        "group",
        worker=("--concurrency", "3"),
        env={"GIGQ_FLUSH_INTERVAL": "1"},
    ),
    Point("release:before", "dag", "worker", {0: HELD, 1: UNTOUCHED}, {0: RESCUED_DONE, 1: DONE}),
    # After the release the child may have been claimed in the same transaction: its end
    # state is checked by status only.
    Point("release:after", "dag", "worker", {0: DONE}, {0: DONE, 1: "completed"}),
    Point("cancel:before", "work", "cancel", {0: UNTOUCHED}, {0: DONE}),
    Point("cancel:after", "work", "cancel", {0: ("cancelled", 0, ())}, {0: ("cancelled", 0, ())}),
    Point("rescue:before", "ghost", "worker", {0: HELD}, {0: RESCUED_DONE}),
    Point("rescue:after", "ghost", "worker", {0: ("pending", 1, ("lost",))}, {0: RESCUED_DONE}),
    # requeue:before ends as it started: a failed job, which stays failed.
    Point(
        "requeue:before",
        "failed",
        "requeue",
        {0: ("failed", 1, ("failed",))},
        {0: ("failed", 1, ("failed",))},
    ),
    Point(
        "requeue:after",
        "failed",
        "requeue",
        {0: ("pending", 0, ("failed",))},
        {0: ("completed", 1, ("failed", "completed"))},
    ),
    # Retention: a worker deletes the old completed jobs in one transaction, then returns
    # the pages they held to the file system in another. The drain worker keeps no
    # retention: jobs kept stay.
    Point("prune:before", "done", "worker", every(OLD, DONE), every(OLD, DONE), env=PRUNING),
    Point(
        "prune:after",
        "done",
        "worker",
        every(OLD, None),
        every(OLD, None),
        facts={"free_pages": True},
        env=PRUNING,
    ),
    Point(
        "vacuum:before",
        "done",
        "worker",
        every(OLD, None),
        every(OLD, None),
        facts={"free_pages": True},
        env=PRUNING,
    ),
    Point(
        "vacuum:after",
        "done",
        "worker",
        every(OLD, None),
        every(OLD, None),
        facts={"free_pages": False},
        env=PRUNING,
    ),
    Point("register:before", "work", "worker", {0: UNTOUCHED}, {0: DONE}, facts={"crasher": None}),
    Point("register:after", "work", "worker", {0: UNTOUCHED}, {0: DONE}, facts={"crasher": "live"}),
    # A burst worker ran the job and dies recording that it stopped.
    Point(
        "deregister:before",
        "work",
        "worker",
        {0: DONE},
        {0: DONE},
        facts={"crasher": "live"},
        worker=("--burst",),
    ),
    Point(
        "deregister:after",
        "work",
        "worker",
        {0: DONE},
        {0: DONE},
        facts={"crasher": "stopped"},
        worker=("--burst",),
    ),
    # `gigq queue pause/resume` of the queue of job 0 (job 1 is in another queue): a fresh
    # worker leaves job 0 alone while it stays paused, and runs it once resumed.
    Point("pause:before", "queues", "pause", {0: UNTOUCHED}, {0: DONE}, facts={"paused": []}),
    Point("pause:after", "queues", "pause", {0: UNTOUCHED}, {0: DONE}, facts={"paused": [PAUSED]}),
    Point(
        "resume:before", "paused", "resume", {0: UNTOUCHED}, {0: DONE}, facts={"paused": [PAUSED]}
    ),
    Point("resume:after", "paused", "resume", {0: UNTOUCHED}, {0: DONE}, facts={"paused": []}),
    Point("kv:before", "work", "kv", {0: UNTOUCHED}, {0: DONE}, facts={"kv": None}),
    Point("kv:after", "work", "kv", {0: UNTOUCHED}, {0: DONE}, facts={"kv": KV[2]}),
    # `gigq migrate` into an empty queue: the target holds nothing of the source, or all
    # of it (the jobs, a paused queue, a key-value entry), never a part.
    Point(
        "import:before",
        "source",
        "migrate",
        {0: None, 1: None},
        {0: None, 1: None},
        facts={"paused": [], "kv": None},
    ),
    Point(
        "import:after",
        "source",
        "migrate",
        {0: UNTOUCHED, 1: UNTOUCHED},
        {0: DONE, 1: DONE},
        facts={"paused": ["elsewhere"], "kv": KV[2]},
    ),
]


def state(db: Path, job_id: str) -> tuple[str, int, tuple[str, ...]] | None:
    """The job's (status, attempts, execution statuses), or None if it does not exist."""
    with read_only(db) as conn:
        row = conn.execute("SELECT status, attempts FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        return None
    return row[0], row[1], tuple(run["status"] for run in executions(db, job_id))


def states(db: Path, ids: list[str], expected: dict[int, State]) -> dict[int, State]:
    """The states of the jobs `expected` names, in its form (a status alone where it gives
    one), to compare with it."""
    seen: dict[int, State] = {}
    for n, want in expected.items():
        found = state(db, ids[n])
        seen[n] = found[0] if isinstance(want, str) and found is not None else found
    return seen


def facts(db: Path, wanted: dict[str, Any]) -> dict[str, Any]:
    """What else is in the database, for the keys of `wanted`: `paused` (the paused
    queues), `kv` (the value of the KV entry), `crasher` (the record of the worker that
    died: None, "live" or "stopped"), `free_pages` (whether the file has free pages)."""
    found: dict[str, Any] = {}
    with read_only(db) as conn:
        if "paused" in wanted:
            rows = conn.execute("SELECT queue FROM paused_queues ORDER BY queue").fetchall()
            found["paused"] = [queue for (queue,) in rows]
        if "kv" in wanted:
            row = conn.execute(
                "SELECT value FROM kv WHERE namespace = ? AND key = ?", KV[:2]
            ).fetchone()
            found["kv"] = None if row is None else row[0]
        if "crasher" in wanted:
            row = conn.execute("SELECT stopped_at FROM workers WHERE id = 'crasher'").fetchone()
            found["crasher"] = None if row is None else "live" if row[0] is None else "stopped"
        if "free_pages" in wanted:
            (free,) = conn.execute("PRAGMA freelist_count").fetchone()
            found["free_pages"] = free > 0
    return found


def open_queue(db: Path) -> JobQueue:
    return JobQueue(str(db), plugin_manager=make_plugin_manager(load_entrypoints=False))


def parent_and_child(ledger: Path) -> list[Job]:
    """Two jobs, the second depending on the first."""
    parent = chaos_job("work", ledger=str(ledger))
    child = Job("child", "tests.process.chaos_jobs:work", params={"ledger": str(ledger)})
    child.dependencies = [parent.id]
    return [parent, child]


def completed_jobs(db: Path, tmp: Path, ledger: Path) -> list[str]:
    """OLD_JOBS jobs run to completion by a burst worker, each with a long description
    (deleting them frees whole pages)."""
    jobs = [chaos_job("work", ledger=str(ledger)) for _ in OLD]
    for job in jobs:
        job.description = "x" * 8000
    ids = submit(db, jobs)
    worker = start_worker(db, tmp, "setup", "--burst", concurrency=OLD_JOBS)
    assert worker.process.wait(timeout=60) == 0, worker.stderr()
    return ids


def set_up(kind: str, db: Path, tmp: Path, ledger: Path) -> list[str]:
    """Create the jobs of a setup; returns their ids (index 0 first)."""
    if kind == "nothing":
        open_queue(db).close()
        return [str(uuid.uuid4())]
    if kind in ("work", "ghost", "failed"):
        ids = submit(db, [chaos_job("work", ledger=str(ledger))])
    elif kind == "long":
        ids = submit(db, [chaos_job("work", ledger=str(ledger), ms=1500)])
    elif kind == "fast":
        ids = submit(db, [chaos_job("work", ledger=str(ledger)) for _ in range(4)])
    elif kind == "group":
        ids = submit(db, [chaos_job("work", ledger=str(ledger), ms=500) for _ in GROUP])
    elif kind == "fail_first":
        job = chaos_job("fail_first", ledger=str(ledger), marker=str(tmp / "marker"))
        # Not at once: the retry would be claimed again in the finishing transaction.
        job.retry_delay = 1
        ids = submit(db, [job])
    elif kind == "always_abort":
        ids = submit(db, [chaos_job("always_abort", ledger=str(ledger))])
    elif kind == "dag":
        ids = submit(db, parent_and_child(ledger))
    elif kind == "source":
        # The queue `gigq migrate` copies into the (not yet existing) test database.
        source = tmp / "source.db"
        ids = submit(source, parent_and_child(ledger))
        with open_queue(source) as queue:
            queue.pause_queue("elsewhere")
            queue.storage.kv_set(*KV)
    elif kind in ("queues", "paused"):
        first = chaos_job("work", ledger=str(ledger))
        first.queue = PAUSED
        ids = submit(db, [first, chaos_job("work", ledger=str(ledger))])
        if kind == "paused":
            with open_queue(db) as queue:
                queue.pause_queue(PAUSED)
    elif kind == "done":
        ids = completed_jobs(db, tmp, ledger)
    else:
        raise AssertionError(kind)
    if kind in ("ghost", "failed"):
        # A worker that is no process at all claims the job, with a lease already over.
        with open_queue(db) as queue:
            [held] = queue.storage.claim("ghost", 1, datetime.now(UTC), 0.01)
            if kind == "failed":
                done = Outcome(job_id=held.id, token=held.token or "", status="failed")
                queue.storage.finish([done], datetime.now(UTC))
        time.sleep(0.05)
    return ids


def actor_command(point: Point, db: Path, ledger: Path, job_id: str) -> list[str]:
    """The command of a process other than a worker that must die at the crash point."""
    cli = [sys.executable, "-m", "gigq_cli"]
    if point.actor in ("pause", "resume"):
        return [*cli, "--db", str(db), "queue", point.actor, PAUSED]
    if point.actor == "migrate":
        return [*cli, "migrate", "--from", str(db.parent / "source.db"), "--to", str(db)]
    client = [sys.executable, "-m", "tests.reliability._client", point.actor, str(db)]
    return [*client, job_id, str(ledger)]


def run_actor(fleet: Fleet, point: Point, db: Path, ledger: Path, job_id: str) -> None:
    """Start the process that must die at the crash point, and wait until it has."""
    env = {"GIGQ_TEST_CRASH": point.crash, **point.env}
    if point.actor == "worker":
        process = fleet.start("crasher", *point.worker, env=env).process
    else:
        process = fleet.spawn(actor_command(point, db, ledger, job_id), env=env)
    code = process.wait(timeout=30)
    assert code == 137, f"the {point.actor} exited {code}, not at the crash point"


def drain(fleet: Fleet, point: Point, db: Path, ids: list[str]) -> list[str]:
    """Let a fresh worker run what is left; returns the ids of the jobs that exist. A
    queue the crash left paused keeps its job from that worker until it is resumed."""
    existing = [job_id for job_id in ids if state(db, job_id) is not None]
    worker = fleet.start("drain")
    if PAUSED in facts(db, {"paused": []}).get("paused", []):
        # Job 1 (in another queue, submitted after job 0) has run: job 0 would have too.
        wait_until(lambda: all_final(db, ids[1:]), 30, f"the other queue's job of {point.id}")
        assert state(db, ids[0]) == UNTOUCHED, f"a paused queue's job ran at {point.id}"
        with open_queue(db) as queue:
            queue.resume_queue(PAUSED)
    wait_until(lambda: all_final(db, existing), 30, f"the fresh worker to drain {point.id}")
    wait_until(lambda: is_registered(db, "drain"), 30, "the fresh worker to start")
    assert stop(worker) == 0, worker.stderr()
    return existing


def forget(ledger: Path, gone: list[str]) -> None:
    """Take the executions of jobs deleted on purpose (pruned) out of the ledger."""
    if gone and ledger.exists():
        lines = ledger.read_text().splitlines(keepends=True)
        ledger.write_text("".join(line for line in lines if line.split(" ")[0] not in gone))


def run_point(point: Point, tmp: Path) -> str:
    """Set up, crash, check, drain, check; returns the ledger check's one-line summary."""
    tmp.mkdir()
    db, ledger = tmp / "jobs.db", tmp / "ledger"
    started = time.monotonic()
    ids = set_up(point.setup, db, tmp, ledger)
    before = [job_id for job_id in ids if db.exists() and state(db, job_id) is not None]
    with Fleet(db, tmp) as fleet:
        run_actor(fleet, point, db, ledger, ids[0])
        seen = states(db, ids, point.after_crash)
        assert seen == point.after_crash, f"right after the crash at {point.id}"
        assert facts(db, point.facts) == point.facts, f"right after the crash at {point.id}"
        existing = drain(fleet, point, db, ids)
    final = states(db, ids, point.after_drain)
    assert final == point.after_drain, f"after the drain of {point.id}"
    forget(ledger, [job_id for job_id in before if job_id not in existing])
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        ledger_check(
            db,
            ledger,
            faults=point.faults,
            submitted=existing,
            expect=None,
            name=f"crash-point {point.id}",
            started=started,
        )
    return output.getvalue().strip()


def test_crash_points(tmp_path: Path) -> None:
    """Every point, a few at a time (each in its own database and processes): run one by
    one they would take minutes of mostly waiting."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = {
            point.id: pool.submit(run_point, point, tmp_path / point.id.replace(":", "-"))
            for point in POINTS
        }
    failures = []
    for name, future in futures.items():
        error = future.exception()
        if error is None:
            print(future.result())
        else:
            print(f"[crash-point {name}] FAILED: {error}")
            failures.append(f"{name}: {error}")
    print(
        f"[crash-points] points={len(POINTS)} failed={len(failures)} "
        f"time={time.monotonic() - started:.1f}s"
    )
    assert not failures, "\n".join(failures)
