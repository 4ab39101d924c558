"""What a new user hits in the first hour, through the real `gigq` command (a subprocess,
as a user runs it): each test reproduces one report and checks its fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def gigq(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m gigq_cli ARGS...` run in `folder`, with no GIGQ_* settings from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIGQ_")}
    return subprocess.run(
        [sys.executable, "-m", "gigq_cli", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A user's project folder with a tasks module."""
    (tmp_path / "tasks.py").write_text("def add(a, b):\n    return a + b\n")
    return tmp_path


def test_requeue_keeps_a_schedule_still_ahead(folder: Path) -> None:
    submitted = gigq(folder, "--json", "submit", "tasks:add", "-p", "a=1", "-p", "b=2",
                     "--delay", "3600")  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)
    before = json.loads(gigq(folder, "--json", "status", job_id).stdout)

    assert gigq(folder, "cancel", job_id).returncode == 0
    requeued = gigq(folder, "requeue", job_id)
    assert requeued.returncode == 0, requeued.stderr

    after = json.loads(gigq(folder, "--json", "status", job_id).stdout)
    assert after["status"] == "pending"
    assert after["run_at"] == before["run_at"], "the requeue dropped the job's schedule"
    ran = gigq(folder, "worker", "--burst")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(gigq(folder, "--json", "status", job_id).stdout)["status"] == "pending"


def test_a_worker_whose_process_is_gone_is_shown_lost_at_once(folder: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIGQ_")}
    worker = subprocess.Popen(
        [sys.executable, "-m", "gigq_cli", "--db", "jobs.db", "worker", "--worker-id", "w-killed"],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert worker.stderr is not None
        while "started" not in worker.stderr.readline():
            assert worker.poll() is None, "the worker exited"
        listed = json.loads(gigq(folder, "--db", "jobs.db", "--json", "workers").stdout)
        assert [(w["id"], w["state"]) for w in listed] == [("w-killed", "live")]
    finally:
        worker.kill()
        worker.wait()
        if worker.stderr is not None:
            worker.stderr.close()
    # Killed a moment ago: its heartbeat is still fresh, but its process is gone.
    listed = json.loads(gigq(folder, "--db", "jobs.db", "--json", "workers").stdout)
    assert [(w["id"], w["state"]) for w in listed] == [("w-killed", "lost")]
    shown = gigq(folder, "--db", "jobs.db", "workers")
    assert "lost" in shown.stdout and "live" not in shown.stdout.replace("Live", ""), shown.stdout
