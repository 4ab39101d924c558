"""200 submitters (10 processes x 20 threads, each with its own connection) race to submit
the same unique key into one SQLite file at the same moment: one job is stored and every
submitter gets its id. With `unique_scope="success"` a completed job still holds the key;
with "active" it does not, and the race again stores exactly one new job."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gigq import JobQueue
from gigq_core import Job, Worker, make_plugin_manager
from tests.process._harness import ROOT, environment, read_only, stop, wait_until

pytestmark = [pytest.mark.process, pytest.mark.timeout(180)]

PROCESSES = 10
THREADS = 20
KEY = "nightly-report"


def race(tmp_path: Path, db: Path, scope: str, round_name: str) -> list[str]:
    """Start the submitters, release them together once all are ready, and return the
    ids every one of them got (PROCESSES * THREADS ids). Fails unless submits of
    different processes overlapped in time (a real race)."""
    folder = tmp_path / round_name
    folder.mkdir()
    go = folder / "go"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for n in range(PROCESSES):
            command = [
                sys.executable, "-m", "tests.process._unique_submitter",
                str(db), KEY, scope, str(THREADS), str(folder / f"ready-{n}"), str(go),
            ]  # fmt: skip
            processes.append(
                subprocess.Popen(
                    command,
                    cwd=ROOT,
                    env=environment(),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                )
            )
        wait_until(
            lambda: (
                all((folder / f"ready-{n}").exists() for n in range(PROCESSES))
                or any(p.poll() is not None for p in processes)
            ),
            90,
            "every submitter to be ready",
        )
        go.touch()
        ids: list[str] = []
        spans: list[tuple[float, float, int]] = []
        for n, process in enumerate(processes):
            out, err = process.communicate(timeout=90)
            assert process.returncode == 0, err.decode(errors="replace")
            for job_id, start, end in json.loads(out):
                ids.append(job_id)
                spans.append((start, end, n))
        first_end = min(end for _, end, _ in spans)
        racing = {n for start, _, n in spans if start < first_end}
        print(f"[unique {round_name}] {len(racing)} processes submitting at the first return")
        assert len(racing) >= 2, "the submitters did not race"
        return ids
    finally:
        for process in processes:
            with contextlib.suppress(Exception):
                stop(process, bound=5)


def stored(db: Path) -> list[tuple[str, str]]:
    """(id, status) of every stored job."""
    with read_only(db) as conn:
        return [tuple(row) for row in conn.execute("SELECT id, status FROM jobs ORDER BY seq")]


def open_queue(db: Path) -> JobQueue:
    """The test's own queue on `db`."""
    return JobQueue(str(db), plugin_manager=make_plugin_manager(load_entrypoints=False))


def test_200_concurrent_submitters_store_one_job(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    open_queue(db).close()  # create the schema first: the race is about the key
    started = time.monotonic()
    ids = race(tmp_path, db, "active", "active")
    assert len(ids) == PROCESSES * THREADS
    jobs = stored(db)
    assert len(jobs) == 1, jobs
    assert set(ids) == {jobs[0][0]}, "every submitter got the one job's id"
    assert jobs[0][1] == "pending"
    print(f"[unique] {len(ids)} submitters, 1 job, {time.monotonic() - started:.1f}s")


def test_success_scope_keeps_a_completed_job_and_active_scope_does_not(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    with open_queue(db) as queue:
        first = queue.submit(Job("unique", "tests.jobs:noop", unique_key=KEY))
        worker = Worker(
            str(db), executor="inline", plugin_manager=make_plugin_manager(load_entrypoints=False)
        )
        try:
            assert worker.process_one()
        finally:
            worker.close()
        assert queue.get_status(first)["status"] == "completed"

    ids = race(tmp_path, db, "success", "success")
    assert ids == [first] * (PROCESSES * THREADS), "the completed job holds the key"
    assert stored(db) == [(first, "completed")], "no new job"

    ids = race(tmp_path, db, "active", "active")
    jobs = stored(db)
    assert len(jobs) == 2, jobs
    assert jobs[0] == (first, "completed")
    assert set(ids) == {jobs[1][0]} and jobs[1][1] == "pending", "exactly one new job"
