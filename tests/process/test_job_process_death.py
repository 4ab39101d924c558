"""A job whose process dies on its own (`os._exit`, a signal it sends itself) fails that
attempt as JobProcessDied, retried per its policy; the worker replaces the child and goes
on. A child whose job kept memory past `max_child_memory` is recycled after it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gigq_core import Job
from tests.process._harness import (
    Fleet,
    all_final,
    executions,
    is_alive,
    job_row,
    ledger_check,
    read_ledger,
    session_members,
    stop,
    submit,
    wait_until,
)

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]

#: How each way of dying reads in the attempt's error.
DEATHS = {
    "exit": "the job's process exited with code 3",
    "SIGKILL": "the job's process killed by signal SIGKILL",
    "SIGSEGV": "the job's process killed by signal SIGSEGV",
}


def dying_job(function: str, name: str, max_attempts: int = 1, **params: object) -> Job:
    """A job calling `tests.process.fault_jobs:<function>`, retried at once."""
    return Job(
        name,
        f"tests.process.fault_jobs:{function}",
        params=dict(params),
        max_attempts=max_attempts,
        retry_delay=0,
    )


@pytest.mark.parametrize("how", sorted(DEATHS))
def test_a_job_process_that_dies_fails_the_attempt_and_the_worker_goes_on(
    tmp_path: Path, how: str
) -> None:
    db, ledger = tmp_path / "jobs.db", tmp_path / "ledger"
    ids = submit(
        db,
        [
            # Dies on every attempt: failed after its two.
            dying_job("die", "always", max_attempts=2, ledger=str(ledger), how=how),
            # Dies once, then completes on its retry.
            dying_job(
                "die",
                "once",
                max_attempts=2,
                ledger=str(ledger),
                how=how,
                marker=str(tmp_path / "marker"),
            ),
            dying_job("keep_memory", "after", ledger=str(ledger)),
        ],
    )
    always, once, after = ids
    with Fleet(db, tmp_path) as fleet:
        worker = fleet.start()
        wait_until(lambda: all_final(db, ids), 60, "every job to end")
        assert is_alive(worker.pid), worker.stderr()
        # The pool is whole again: the supervisor and one live child (concurrency 1).
        wait_until(lambda: len(session_members(worker.pid)) == 2, 30, "the child to be replaced")
        assert stop(worker) == 0, worker.stderr()

    died = DEATHS[how]
    assert (job_row(db, always)["status"], job_row(db, always)["attempts"]) == ("failed", 2)
    runs = executions(db, always)
    assert [(r["status"], r["error_type"]) for r in runs] == [("failed", "JobProcessDied")] * 2
    assert all(r["error_message"] == died for r in runs), runs
    assert [(r["status"], r["error_type"]) for r in executions(db, once)] == [
        ("failed", "JobProcessDied"),
        ("completed", None),
    ]
    assert job_row(db, after)["status"] == "completed"
    entries = read_ledger(ledger)
    assert len(entries) == 5
    # A child whose job died never runs another one: the worker replaced it.
    dying = [e for e in entries if e.job_id == always] + [
        next(e for e in entries if e.job_id == once)
    ]
    for index, entry in enumerate(entries):
        if entry in dying:
            assert entry.pid not in [e.pid for e in entries[index + 1 :]], entries
    assert worker.pid not in {entry.pid for entry in entries}
    # Each death is a fault: the two retries are its extra executions.
    summary = ledger_check(db, ledger, faults=2, submitted=ids, expect=None, name=f"died-{how}")
    assert summary.statuses == {"failed": 1, "completed": 2}


def test_a_child_past_max_child_memory_is_recycled_after_its_job(tmp_path: Path) -> None:
    db, ledger = tmp_path / "jobs.db", tmp_path / "ledger"
    ids = submit(
        db,
        [
            dying_job("keep_memory", "small", ledger=str(ledger)),
            dying_job("keep_memory", "leaks", ledger=str(ledger), mib=300),
            dying_job("keep_memory", "next", ledger=str(ledger)),
            dying_job("keep_memory", "last", ledger=str(ledger)),
        ],
    )
    with Fleet(db, tmp_path) as fleet:
        worker = fleet.start(None, "--max-child-memory", "200")
        wait_until(lambda: all_final(db, ids), 60, "every job to end")
        assert stop(worker) == 0, worker.stderr()

    assert {job_row(db, i)["status"] for i in ids} == {"completed"}
    small, leaks, after, last = (entry.pid for entry in read_ledger(ledger))
    # A child under the limit keeps running jobs; the one that kept 300 MiB is replaced
    # after its job, and the next job runs in the new child, which stays.
    assert small == leaks
    assert after != leaks
    assert last == after
    ledger_check(db, ledger, faults=0, submitted=ids, name="max-child-memory")
