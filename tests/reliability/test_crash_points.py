"""Crash points (docs/guarantees.md): a process dies (`os._exit(137)`, through the
test-only GIGQ_TEST_CRASH of gigq_sqlite) right before or right after the COMMIT of submit,
claim, heartbeat, finish (complete, retry, fail), dependency release, cancel, rescue and
requeue. The state it leaves is the one expected of that point, and a fresh worker then
drains the queue to the expected end, which the ledger check confirms."""

from __future__ import annotations

import contextlib
import io
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

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
    job_row,
    ledger_check,
    read_only,
    stop,
    submit,
    wait_until,
)

pytestmark = [pytest.mark.process, pytest.mark.timeout(90)]

#: (status, attempts, execution statuses) of a job; None: the job must not exist.
State = tuple[str, int, tuple[str, ...]] | None


@attrs.frozen
class Point:
    """One crash point: what is set up, who dies where, and what each job looks like after
    the crash and after the drain (jobs by their index in the setup)."""

    crash: str
    setup: str
    actor: str  # "worker", or a _client action: "submit", "cancel", "requeue"
    after_crash: dict[int, State]
    after_drain: dict[int, State]
    variant: str = ""

    @property
    def id(self) -> str:
        return self.crash + (f"-{self.variant}" if self.variant else "")


DONE = ("completed", 1, ("completed",))
RESCUED_DONE = ("completed", 2, ("lost", "completed"))
UNTOUCHED = ("pending", 0, ())
HELD = ("running", 1, ("running",))

POINTS = [
    Point("submit:before", "nothing", "submit", {0: None}, {0: None}),
    Point("submit:after", "nothing", "submit", {0: UNTOUCHED}, {0: DONE}),
    Point("claim:before", "work", "worker", {0: UNTOUCHED}, {0: DONE}),
    Point("claim:after", "work", "worker", {0: HELD}, {0: RESCUED_DONE}),
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
    Point("release:before", "dag", "worker", {0: HELD, 1: UNTOUCHED}, {0: RESCUED_DONE, 1: DONE}),
    # After the release the child may have been claimed in the same transaction: its end
    # state is checked by status only (None = "completed, any history").
    Point("release:after", "dag", "worker", {0: DONE}, {0: DONE}),
    Point("cancel:before", "work", "cancel", {0: UNTOUCHED}, {0: DONE}),
    Point("cancel:after", "work", "cancel", {0: ("cancelled", 0, ())}, {0: ("cancelled", 0, ())}),
    Point("rescue:before", "ghost", "worker", {0: HELD}, {0: RESCUED_DONE}),
    Point("rescue:after", "ghost", "worker", {0: ("pending", 1, ("lost",))}, {0: RESCUED_DONE}),
    Point("requeue:before", "failed", "requeue", {0: ("failed", 1, ("failed",))}, {0: None}),
    Point(
        "requeue:after",
        "failed",
        "requeue",
        {0: ("pending", 0, ("failed",))},
        {0: ("completed", 1, ("failed", "completed"))},
    ),
]
# requeue:before ends as it started: a failed job, which stays failed.
POINTS[-2] = attrs.evolve(POINTS[-2], after_drain={0: ("failed", 1, ("failed",))})


def state(db: Path, job_id: str) -> State:
    """The job's (status, attempts, execution statuses), or None if it does not exist."""
    with read_only(db) as conn:
        row = conn.execute("SELECT status, attempts FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        return None
    return row[0], row[1], tuple(run["status"] for run in executions(db, job_id))


def set_up(kind: str, db: Path, tmp: Path, ledger: Path) -> list[str]:
    """Create the jobs of a setup; returns their ids (index 0 first)."""
    if kind == "nothing":
        JobQueue(str(db), plugin_manager=make_plugin_manager(load_entrypoints=False)).close()
        return [str(uuid.uuid4())]
    if kind in ("work", "ghost", "failed"):
        ids = submit(db, [chaos_job("work", ledger=str(ledger))])
    elif kind == "long":
        ids = submit(db, [chaos_job("work", ledger=str(ledger), ms=1500)])
    elif kind == "fail_first":
        job = chaos_job("fail_first", ledger=str(ledger), marker=str(tmp / "marker"))
        # Not at once: the retry would be claimed again in the finishing transaction.
        job.retry_delay = 1
        ids = submit(db, [job])
    elif kind == "always_abort":
        ids = submit(db, [chaos_job("always_abort", ledger=str(ledger))])
    elif kind == "dag":
        parent = chaos_job("work", ledger=str(ledger))
        child = Job("child", "tests.process.chaos_jobs:work", params={"ledger": str(ledger)})
        child.dependencies = [parent.id]
        ids = submit(db, [parent, child])
    else:
        raise AssertionError(kind)
    if kind in ("ghost", "failed"):
        # A worker that is no process at all claims the job, with a lease already over.
        pm = make_plugin_manager(load_entrypoints=False)
        with JobQueue(str(db), plugin_manager=pm) as queue:
            [held] = queue.storage.claim("ghost", 1, datetime.now(UTC), 0.01)
            if kind == "failed":
                done = Outcome(job_id=held.id, token=held.token or "", status="failed")
                queue.storage.finish([done], datetime.now(UTC))
        time.sleep(0.05)
    return ids


def run_actor(fleet: Fleet, point: Point, db: Path, ledger: Path, job_id: str) -> None:
    """Start the process that must die at the crash point, and wait until it has."""
    env = {"GIGQ_TEST_CRASH": point.crash}
    if point.actor == "worker":
        process = fleet.start("crasher", env=env).process
    else:
        command = [sys.executable, "-m", "tests.reliability._client", point.actor, str(db)]
        process = fleet.spawn([*command, job_id, str(ledger)], env=env)
    code = process.wait(timeout=30)
    assert code == 137, f"the {point.actor} exited {code}, not at the crash point"


def run_point(point: Point, tmp: Path) -> str:
    """Set up, crash, check, drain, check; returns the ledger check's one-line summary."""
    tmp.mkdir()
    db, ledger = tmp / "jobs.db", tmp / "ledger"
    started = time.monotonic()
    ids = set_up(point.setup, db, tmp, ledger)
    with Fleet(db, tmp) as fleet:
        run_actor(fleet, point, db, ledger, ids[0])
        seen = {n: state(db, ids[n]) for n in point.after_crash}
        assert seen == point.after_crash, f"right after the crash at {point.id}"
        drain = fleet.start("drain")
        existing = [job_id for job_id in ids if state(db, job_id) is not None]
        wait_until(lambda: all_final(db, existing), 30, f"the fresh worker to drain {point.id}")
        wait_until(lambda: is_registered(db, "drain"), 30, "the fresh worker to start")
        assert stop(drain) == 0, drain.stderr()
    final = {n: state(db, ids[n]) for n in point.after_drain}
    assert final == point.after_drain, f"after the drain of {point.id}"
    if len(ids) > 1:
        assert job_row(db, ids[1])["status"] == "completed", point.id
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        ledger_check(
            db,
            ledger,
            faults=1,
            submitted=existing,
            expect=None,
            name=f"crash-point {point.id}",
            started=started,
        )
    return output.getvalue().strip()


def test_crash_points(tmp_path: Path) -> None:
    """Every point, a few at a time (each in its own database and processes): run one by
    one they would take a minute and a half of mostly waiting."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=5) as pool:
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
