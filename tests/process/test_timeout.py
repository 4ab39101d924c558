"""A job past its timeout is killed with every process it started, and the worker goes on."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.process._harness import (
    Fleet,
    all_final,
    chaos_job,
    executions,
    is_alive,
    job_row,
    ledger_check,
    stop,
    submit,
    wait_until,
)

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]


def test_timeout_kills_job_and_grandchild(tmp_path: Path) -> None:
    db, ledger, pidfile = tmp_path / "jobs.db", tmp_path / "ledger", tmp_path / "grandchild"
    slow, after = submit(
        db,
        [
            chaos_job(
                "spawn_grandchild",
                ledger=str(ledger),
                pidfile=str(pidfile),
                seconds=60,
                timeout=1,
                max_attempts=1,
            ),
            chaos_job("work", ledger=str(ledger)),
        ],
    )
    with Fleet(db, tmp_path) as fleet:
        worker = fleet.start()
        grandchild = int(
            wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 30, "a pid")
        )
        wait_until(lambda: all_final(db, [slow, after]), 30, "both jobs to finish")
        # Allow a moment for the kill to land and the process to be reaped.
        wait_until(lambda: not is_alive(grandchild), 5, f"grandchild {grandchild} to die")
        assert stop(worker) == 0, worker.stderr()
    job = job_row(db, slow)
    assert job["status"] == "timeout", job
    runs = executions(db, slow)
    assert [(r["status"], r["error_type"]) for r in runs] == [("timeout", "Timeout")]
    assert job_row(db, after)["status"] == "completed"
    ledger_check(db, ledger, faults=0, submitted=[slow, after], expect=None, name="timeout")
