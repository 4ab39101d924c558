"""Function policy with a real worker (RELIABILITY.md fast tier 13; the inline variants are in
tests/unit/test_worker.py and tests/unit/test_queue.py): `os:system` and friends are refused
at submit, and when written into the database by raw SQL a worker process fails them with
"not allowed" without ever running them (their side effect, a file, never appears)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from gigq_core import DisallowedFunctionError, Job, JobQueue, make_plugin_manager
from tests.process._harness import (
    Fleet,
    all_final,
    chaos_job,
    executions,
    job_row,
    ledger_check,
    stop,
    submit,
    wait_until,
)

pytestmark = [pytest.mark.process, pytest.mark.timeout(90)]


def forbidden(marker: Path) -> dict[str, dict[str, object]]:
    """Function path -> params that would create `marker` if the call ever ran."""
    touch = f"touch {marker}"
    return {
        "os:system": {"command": touch},
        "subprocess:run": {"args": ["touch", str(marker)]},
        "subprocess:check_call": {"args": ["touch", str(marker)]},
        "builtins:eval": {"source": f"open({str(marker)!r}, 'w')"},
        "builtins:exec": {"source": f"open({str(marker)!r}, 'w')"},
        "pickle:loads": {"data": "x"},
        "os.path:join": {"a": "x"},
        "shutil:rmtree": {"path": str(marker.parent / "nothing-here")},
    }


def test_disallowed_functions_are_refused_at_submit_and_failed_by_a_worker(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    db, ledger, marker = tmp_path / "jobs.db", tmp_path / "ledger", tmp_path / "marker"
    calls = forbidden(marker)
    pm = make_plugin_manager(load_entrypoints=False)
    with JobQueue(str(db), plugin_manager=pm) as queue:
        for function, params in calls.items():
            with pytest.raises(DisallowedFunctionError, match="not allowed"):
                queue.submit(Job("evil", function, params=params))
        assert queue.stats()["total"] == 0
    # Written behind GigQ's back: valid jobs, then their function swapped by raw SQL.
    evil = submit(db, [chaos_job("work", ledger=str(ledger)) for _ in calls])
    normal = submit(db, [chaos_job("work", ledger=str(ledger)) for _ in range(5)])
    conn = sqlite3.connect(db)
    with conn:
        for job_id, (function, params) in zip(evil, calls.items(), strict=True):
            conn.execute(
                "UPDATE jobs SET function = ?, params = ? WHERE id = ?",
                (function, json.dumps(params), job_id),
            )
    conn.close()
    with Fleet(db, tmp_path) as fleet:
        worker = fleet.start(concurrency=2)
        wait_until(lambda: all_final(db), 45, "the worker to fail or run every job")
        assert stop(worker) == 0, worker.stderr()
    for job_id, function in zip(evil, calls, strict=True):
        job = job_row(db, job_id)
        assert (job["status"], job["attempts"]) == ("failed", 1), (function, job)
        assert "not allowed" in job["error"], (function, job["error"])
        assert [r["status"] for r in executions(db, job_id)] == ["failed"]
    assert not marker.exists(), "a disallowed function ran"
    assert all(job_row(db, job_id)["status"] == "completed" for job_id in normal)
    summary = ledger_check(
        db,
        ledger,
        faults=0,
        submitted=[*evil, *normal],
        expect=None,
        name="function-policy",
        started=started,
        refused_at_submit=len(calls),
        failed_by_worker=len(evil),
    )
    assert summary.executions == len(normal), "a disallowed job reached the ledger"
