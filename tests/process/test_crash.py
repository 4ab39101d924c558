"""A worker that dies (SIGKILL), freezes (SIGSTOP) or is killed by its own job: its jobs are
rescued after the lease, a stale report changes nothing, a poison job cannot loop forever."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gigq_core.worker import FLUSH_MAX_JOBS
from tests.process._harness import (
    LEASE,
    SWEEP,
    Fleet,
    all_final,
    chaos_job,
    executions,
    is_alive,
    job_row,
    kill,
    ledger_check,
    read_ledger,
    stop,
    submit,
    wait_until,
)

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]

#: Long enough for a lease to expire, a sweep to notice, and a worker to claim again.
RESCUE = LEASE + SWEEP + 10


def test_sigkill_mid_job_is_rescued(tmp_path: Path) -> None:
    db, ledger = tmp_path / "jobs.db", tmp_path / "ledger"
    [job_id] = submit(db, [chaos_job("work", ledger=str(ledger), ms=3000)])
    with Fleet(db, tmp_path) as fleet:
        first = fleet.start("first")
        wait_until(lambda: read_ledger(ledger), 30, "the job to start")
        kill(first)
        second = fleet.start("second")
        wait_until(lambda: all_final(db, [job_id]), RESCUE + 3, "the rescued job to finish")
        assert stop(second) == 0, second.stderr()
    job = job_row(db, job_id)
    assert (job["status"], job["attempts"]) == ("completed", 2)
    runs = executions(db, job_id)
    assert [(r["status"], r["worker_id"], r["attempt"]) for r in runs] == [
        ("lost", "first", 1),
        ("completed", "second", 2),
    ]
    assert runs[0]["error_message"] == "worker lost"
    assert [e.attempt for e in read_ledger(ledger)] == [1, 2]
    ledger_check(db, ledger, faults=1, submitted=[job_id], name="sigkill-rescue")


@pytest.mark.parametrize("death", ["sigkill", "second-sigint"])
def test_dead_worker_leaves_no_job_process_behind(tmp_path: Path, death: str) -> None:
    """When the supervisor is gone (SIGKILL, or a second signal's immediate exit), its job
    processes must not run on: the rescued attempt would run at the same time as the old
    one ("not run twice at once")."""
    db, ledger, marker = tmp_path / "jobs.db", tmp_path / "ledger", tmp_path / "marker"
    [job_id] = submit(
        db, [chaos_job("sleep_unless_marked", ledger=str(ledger), marker=str(marker), long=60)]
    )
    with Fleet(db, tmp_path) as fleet:
        first = fleet.start("first", grace=30)
        [started] = wait_until(lambda: read_ledger(ledger), 30, "the job to start")
        if death == "sigkill":
            kill(first)
        else:
            os.kill(first.pid, signal.SIGINT)
            time.sleep(0.5)
            os.kill(first.pid, signal.SIGINT)
            first.process.wait(timeout=10)
        fleet.start("second")
        wait_until(lambda: len(read_ledger(ledger)) == 2, RESCUE, "the rescued run to start")
        orphan_alive = is_alive(started.pid)
        wait_until(lambda: all_final(db, [job_id]), 30, "the rescued job to finish")
    assert not orphan_alive, (
        f"the first attempt's process {started.pid} was still running its job when the "
        "rescued attempt started"
    )
    assert job_row(db, job_id)["status"] == "completed"


def test_zombie_fencing(tmp_path: Path) -> None:
    db, ledger, marker = tmp_path / "jobs.db", tmp_path / "ledger", tmp_path / "marker"
    # The first run outlives the lease while its worker is frozen; the rescue run is short.
    [job_id] = submit(
        db,
        [
            chaos_job(
                "sleep_unless_marked", ledger=str(ledger), marker=str(marker), long=1.5, short=0.1
            )
        ],
    )
    with Fleet(db, tmp_path) as fleet:
        zombie = fleet.start("zombie")
        wait_until(lambda: read_ledger(ledger), 30, "the job to start")
        os.kill(zombie.pid, signal.SIGSTOP)  # the supervisor only: its child finishes the job
        try:
            rescuer = fleet.start("rescuer")
            wait_until(lambda: all_final(db, [job_id]), RESCUE + 3, "the rescue to complete")
            time.sleep(0.5)  # the child's stale result is waiting in the pipe by now
        finally:
            os.kill(zombie.pid, signal.SIGCONT)
        ignored = re.compile(
            rf"job {job_id} .*(outcome completed ignored|was taken from this worker)"
        )
        wait_until(lambda: ignored.search(zombie.stderr()), 10, "the zombie to log the loss")
        assert stop(zombie) == 0, zombie.stderr()
        assert stop(rescuer) == 0, rescuer.stderr()
    job = job_row(db, job_id)
    assert (job["status"], job["attempts"], job["worker_id"]) == ("completed", 2, "rescuer")
    runs = executions(db, job_id)
    assert [(r["status"], r["worker_id"]) for r in runs] == [
        ("lost", "zombie"),
        ("completed", "rescuer"),
    ]
    first, second = read_ledger(ledger)
    assert (first.attempt, second.attempt) == (1, 2)
    assert f'"pid":{second.pid}' in job["result"], "the stale attempt's result was stored"
    path = "storage-fence" if "outcome completed ignored" in zombie.stderr() else "heartbeat"
    ledger_check(db, ledger, faults=1, submitted=[job_id], name="zombie", stale_stopped_by=path)


def test_a_stale_completion_is_refused_by_the_storage_fence_itself(tmp_path: Path) -> None:
    """The fence without the worker's help: a process that claimed the job (no heartbeat,
    no loop to notice the loss) reports its stale attempt completed after another worker
    rescued and completed the job. The storage alone must refuse it."""
    db, ledger, go = tmp_path / "jobs.db", tmp_path / "ledger", tmp_path / "go"
    [job_id] = submit(db, [chaos_job("work", ledger=str(ledger))])
    with Fleet(db, tmp_path) as fleet:
        stale = fleet.spawn(
            [sys.executable, "-m", "tests.process._stale_finisher", str(db), str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert stale.stdout is not None
        claimed_id, token = stale.stdout.readline().split()
        assert claimed_id == job_id
        rescuer = fleet.start("rescuer")
        wait_until(lambda: all_final(db, [job_id]), RESCUE + 3, "the rescue to complete")
        go.touch()
        answer = stale.stdout.readline().strip()
        assert stale.wait(timeout=30) == 0
        stale.stdout.close()
        assert stop(rescuer) == 0, rescuer.stderr()
    assert answer == "fenced", answer
    job = job_row(db, job_id)
    assert (job["status"], job["worker_id"], job["attempts"]) == ("completed", "rescuer", 2)
    assert "stale" not in job["result"]
    runs = executions(db, job_id)
    assert (runs[0]["status"], runs[0]["worker_id"], runs[0]["token"]) == ("lost", "zombie", token)
    assert [r["status"] for r in runs] == ["lost", "completed"]


def test_rescued_attempt_result_not_taken_for_the_next_attempt(tmp_path: Path) -> None:
    """A worker frozen past its lease (its job rescued meanwhile by another worker's sweep)
    claims the job again when it resumes. The first attempt's late result must not be
    recorded as the new attempt's: the job completes with the result of attempt 2."""
    db, ledger, marker = tmp_path / "jobs.db", tmp_path / "ledger", tmp_path / "marker"
    # Attempt 1 runs 5 s and ends while attempt 2 (3 s) is still running in the same worker.
    [job_id] = submit(
        db,
        [chaos_job("sleep_unless_marked", ledger=str(ledger), marker=str(marker), long=5, short=3)],
    )
    with Fleet(db, tmp_path) as fleet:
        frozen = fleet.start("frozen", concurrency=2)
        wait_until(lambda: read_ledger(ledger), 30, "the job to start")
        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            # A sweeper that serves another queue: it rescues the job but cannot claim it.
            sweeper = fleet.start("sweeper", "--queue", "elsewhere")
            wait_until(lambda: job_row(db, job_id)["status"] == "pending", RESCUE, "a rescue")
            assert stop(sweeper) == 0, sweeper.stderr()
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
        wait_until(lambda: all_final(db, [job_id]), 30, "the job to finish")
        assert stop(frozen) == 0, frozen.stderr()
    # First the ledger check: it names a stale result accepted for a later attempt.
    ledger_check(db, ledger, faults=1, submitted=[job_id], name="reclaim")
    job = job_row(db, job_id)
    assert json.loads(job["result"])["attempt"] == 2, job["result"]
    runs = executions(db, job_id)
    assert [(r["status"], r["attempt"]) for r in runs] == [("lost", 1), ("completed", 2)]


def test_poison_job(tmp_path: Path) -> None:
    db, ledger = tmp_path / "jobs.db", tmp_path / "ledger"
    started = time.monotonic()
    [poison] = submit(db, [chaos_job("kill_own_worker", ledger=str(ledger), max_attempts=3)])
    normal = submit(db, [chaos_job("work", ledger=str(ledger), ms=5) for _ in range(100)])
    restarts = 0
    with Fleet(db, tmp_path) as fleet:
        live = [fleet.start() for _ in range(2)]
        deadline = time.monotonic() + 90
        while not all_final(db):
            assert time.monotonic() < deadline, "the jobs did not finish within 90 s"
            for n, worker in enumerate(live):
                if worker.process.poll() is not None:  # killed by the poison job: replace
                    restarts += 1
                    live[n] = fleet.start()
            time.sleep(0.1)
        codes = [stop(worker) for worker in live]
    assert codes == [0, 0], codes
    job = job_row(db, poison)
    assert (job["status"], job["error"], job["attempts"]) == ("failed", "worker lost", 3)
    assert [r["status"] for r in executions(db, poison)] == ["lost"] * 3
    assert restarts == 3
    assert all(job_row(db, job_id)["status"] == "completed" for job_id in normal)
    # A dying worker interrupts its poison job and the jobs whose outcomes waited for the
    # next group commit (each rescued with a "lost" record); nothing else runs again.
    rescued = [job_id for job_id in normal if any(
        r["status"] == "lost" for r in executions(db, job_id)
    )]  # fmt: skip
    assert len(rescued) <= restarts * FLUSH_MAX_JOBS, rescued
    ledger_check(
        db,
        ledger,
        faults=restarts,
        submitted=[poison, *normal],
        # The poison job's runs after its first, and one re-run per rescued job.
        allowed_extra=(restarts - 1) + len(rescued),
        expect=None,
        name="poison",
        started=started,
        kills=restarts,
        rescued=len(rescued),
    )
