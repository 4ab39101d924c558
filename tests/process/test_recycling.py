"""Child recycling (`max_jobs_per_child`): every job runs once, in a fresh child when its
predecessor retired, and none is sent to a child that is leaving."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.process._harness import (
    Fleet,
    all_final,
    chaos_job,
    job_row,
    ledger_check,
    read_ledger,
    stop,
    submit,
    wait_until,
)

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]


@pytest.mark.parametrize("concurrency", [1, 2])
def test_recycled_children_run_every_job_once(tmp_path: Path, concurrency: int) -> None:
    db, ledger = tmp_path / "jobs.db", tmp_path / "ledger"
    ids = submit(db, [chaos_job("work", ledger=str(ledger)) for _ in range(12)])
    with Fleet(db, tmp_path) as fleet:
        worker = fleet.start(None, "--max-jobs-per-child", "1", concurrency=concurrency)
        wait_until(lambda: all_final(db, ids), 60, "every job to end")
        assert stop(worker) == 0, worker.stderr()
    assert {job_row(db, i)["status"] for i in ids} == {"completed"}
    runs = read_ledger(ledger)
    assert len(runs) == 12
    assert len({run.pid for run in runs}) == 12, "a child ran more than one job"
    ledger_check(db, ledger, faults=0, submitted=ids, name=f"recycling-c{concurrency}")
