"""A worker that cannot import a job's module (started in the wrong folder) hands its jobs
back, uncounted, says why and how to mend it, and backs off from that module while it
serves the others; a worker that can import it (`--path`) then runs each job once
(issue 20, item 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gigq_core import Job
from tests.process._harness import (
    LEASE,
    ROOT,
    WorkerProcess,
    chaos_job,
    environment,
    executions,
    is_alive,
    job_row,
    stop,
    submit,
    wait_until,
)

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]

TASKS = "def add(a, b):\n    return a + b\n"


def start(db: Path, folder: Path, worker_id: str, *args: str) -> WorkerProcess:
    """`python -m gigq_cli worker` run in `folder` (the project root is on the import path,
    for the chaos jobs; the folder of tasks.py is not)."""
    log = folder / f"{worker_id}.log"
    command = [
        sys.executable, "-m", "gigq_cli", "--db", str(db), "worker",
        "--worker-id", worker_id, "--concurrency", "2", "--polling-interval", "0.2",
        "--lease", str(LEASE), "--heartbeat", "0.5", *args,
    ]  # fmt: skip
    with open(log, "ab") as err:
        process = subprocess.Popen(
            command,
            cwd=folder,
            env=environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    return WorkerProcess(worker_id=worker_id, process=process, log=log)


def test_a_worker_that_cannot_import_the_module_hands_jobs_back_for_one_that_can(tmp_path):
    code = tmp_path / "code"
    elsewhere = tmp_path / "elsewhere"
    code.mkdir()
    elsewhere.mkdir()
    (code / "tasks.py").write_text(TASKS)
    db = tmp_path / "jobs.db"
    ids = submit(db, [Job(f"add{i}", "tasks:add", params={"a": i, "b": 1}) for i in range(6)])

    wrong = start(db, elsewhere, "wrong")
    right: WorkerProcess | None = None
    try:
        wait_until(
            lambda: "handed back, its attempt not counted" in wrong.stderr(),
            30,
            "the wrong worker to hand a job back",
        )
        log = wrong.stderr()
        assert "ERROR gigq: worker wrong cannot import module 'tasks'" in log, log
        assert f"{elsewhere} (the current folder)" in log
        assert "Start the worker in the folder of your code, or pass --path DIR" in log
        assert "claims no job of 'tasks' for 30 s" in log
        assert "failed for good" not in log

        # It goes on serving the functions it can import, and leaves the tasks jobs alone.
        ledger = tmp_path / "ledger"
        [other] = submit(db, [chaos_job("work", ledger=str(ledger))])
        wait_until(lambda: job_row(db, other)["status"] == "completed", 30, "the other job")
        rows = [job_row(db, i) for i in ids]
        assert [(r["status"], r["attempts"]) for r in rows] == [("pending", 0)] * 6
        handed = [e for i in ids for e in executions(db, i)]
        assert handed and all(e["status"] == "handed_back" for e in handed)
        assert len(handed) <= 2  # one claim's worth, then the back-off
        assert is_alive(wrong.pid)

        shown = subprocess.run(
            [sys.executable, "-m", "gigq_cli", "--db", str(db), "workers"],
            cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert "wrong cannot import: tasks (backing off until" in shown.stdout, shown.stdout
        listed = subprocess.run(
            [sys.executable, "-m", "gigq_cli", "--db", str(db), "--json", "workers"],
            cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        [entry] = [w for w in json.loads(listed.stdout) if w["id"] == "wrong"]
        assert list(entry["cannot_import"]) == ["tasks"]

        # A worker told where the code is runs every job, once.
        right = start(db, elsewhere, "right", "--path", str(code))
        wait_until(
            lambda: all(job_row(db, i)["status"] == "completed" for i in ids), 60, "the jobs"
        )
        for index, job_id in enumerate(ids):
            row = job_row(db, job_id)
            assert (row["attempts"], row["worker_id"], json.loads(row["result"])) == (
                1,
                "right",
                index + 1,
            )
            ran = [e for e in executions(db, job_id) if e["status"] != "handed_back"]
            assert [e["status"] for e in ran] == ["completed"]
        assert is_alive(wrong.pid)
    finally:
        codes = [stop(w) for w in (wrong, right) if w is not None]
    assert codes == [0, 0], wrong.stderr()
