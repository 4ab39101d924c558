"""`gigq worker` as a real process: `--once`, and a run stopped by SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from gigq_core import Job, JobQueue, make_plugin_manager

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]


def gigq(db: str, *args: str) -> list[str]:
    """The command line of `python -m gigq_cli --db DB ARGS...`."""
    return [sys.executable, "-m", "gigq_cli", "--db", db, *args]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIGQ_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill what we started (its own session: the worker and its pool children)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def test_worker_once_runs_a_job_in_a_subprocess(tmp_path: Path) -> None:
    db = str(tmp_path / "jobs.db")
    pm = make_plugin_manager(load_entrypoints=False)
    with JobQueue(db, plugin_manager=pm) as queue:
        job_id = queue.submit(Job("add", "tests.jobs:add", params={"a": 2, "b": 5}))
    process = subprocess.Popen(
        gigq(db, "worker", "--once"),
        cwd=ROOT, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = process.communicate(timeout=60)
    finally:
        kill_group(process)
    assert process.returncode == 0, err.decode()
    assert out.decode() == "Processed one job.\n"
    with JobQueue(db, plugin_manager=pm) as queue:
        assert queue.get_result(job_id) == 7


def test_worker_runs_jobs_until_sigterm_then_exits_0(tmp_path: Path) -> None:
    db = str(tmp_path / "jobs.db")
    pm = make_plugin_manager(load_entrypoints=False)
    with JobQueue(db, plugin_manager=pm) as queue:
        ids = [
            queue.submit(Job("add", "tests.jobs:add", params={"a": i, "b": 1})) for i in range(3)
        ]
    process = subprocess.Popen(
        gigq(
            db, "worker", "--worker-id", "w-sub", "--concurrency", "2",
            "--polling-interval", "0.2", "--heartbeat", "0.5", "--lease", "5", "--grace", "5",
        ),
        cwd=ROOT, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait = subprocess.run(
            gigq(db, "--json", "wait", *ids, "--timeout", "60"),
            cwd=ROOT, env=environment(), capture_output=True, timeout=90,
        )  # fmt: skip
        assert wait.returncode == 0, wait.stderr.decode()
        assert json.loads(wait.stdout) == dict.fromkeys(ids, "completed")

        listed = subprocess.run(
            gigq(db, "--json", "workers"), cwd=ROOT, env=environment(), capture_output=True,
            timeout=60,
        )  # fmt: skip
        workers = {w["id"]: w for w in json.loads(listed.stdout)}
        assert workers["w-sub"]["state"] == "live"
        assert workers["w-sub"]["pid"] == process.pid

        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err.decode()
    finally:
        kill_group(process)
    assert b"Traceback" not in err
    with JobQueue(db, plugin_manager=pm) as queue:
        assert [queue.get_result(i) for i in ids] == [1, 2, 3]
        hour_ago = queue.clock.now() - timedelta(hours=1)
        stopped = {w.id: w for w in queue.workers(since=hour_ago)}
        assert stopped["w-sub"].stopped_at is not None
