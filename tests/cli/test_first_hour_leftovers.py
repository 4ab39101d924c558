"""What a job leaves running ends with its attempt (issue 20, item 7), through the real
`gigq worker`: a `sleep` a job started and left behind, in its own process group or in a new
session, is gone once the job's outcome is recorded, and the worker's log names it; with
`kill_leftovers` off it runs on."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.helpers import run_gigq, user_environment
from tests.process._harness import is_alive, stop, wait_until

pytestmark = [
    pytest.mark.process,
    pytest.mark.timeout(120),
    pytest.mark.skipif(sys.platform != "linux", reason="leftovers are found through /proc"),
]

TASKS = """\
import subprocess


def leave_a_sleep(how):
    # Own process group, or a new session (and so a group) of its own: out of the job's.
    options = {"process_group": 0} if how == "group" else {"start_new_session": True}
    return subprocess.Popen(["sleep", "30"], **options).pid
"""


_env = user_environment


def _gigq(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_gigq(folder, "--db", "jobs.db", *args)


@contextlib.contextmanager
def _worker(folder: Path, **env: str) -> Iterator[Path]:
    """A `gigq worker` running in `folder`; yields the file its log goes to."""
    log = folder / "worker.log"
    with open(log, "wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "gigq_cli", "--db", "jobs.db", "worker",
             "--create", "--polling-interval", "0.2"],
            cwd=folder,
            env=_env(**env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield log
    finally:
        assert stop(process) == 0, log.read_text()


def _run_job(folder: Path, how: str) -> int:
    """Submit `tasks:leave_a_sleep`, wait for it to complete; the pid of its sleep."""
    submitted = _gigq(folder, "--json", "submit", "tasks:leave_a_sleep", "-p", f"how={how}")
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)

    def completed() -> dict[str, object] | None:
        shown = json.loads(_gigq(folder, "--json", "status", job_id).stdout)
        return shown if shown["status"] in {"completed", "failed"} else None

    info = wait_until(completed, 30, "the job to end")
    assert info["status"] == "completed", info
    pid = info["result"]
    assert isinstance(pid, int)
    return pid


@pytest.mark.parametrize("how", ["group", "session"])
def test_what_a_returned_job_left_running_is_ended_and_logged(tmp_path: Path, how: str) -> None:
    (tmp_path / "tasks.py").write_text(TASKS)
    pid = 0
    try:
        with _worker(tmp_path) as log:
            pid = _run_job(tmp_path, how)
            # Ended before the outcome was recorded, not only some time after.
            assert not is_alive(pid), f"sleep {pid} outlived its job"
            line = wait_until(
                lambda: re.search(r"WARNING.* left 1 process running \(.*\); terminated",
                                  log.read_text()),
                5, "the warning",
            )  # fmt: skip
            assert f"(pid {pid}: sleep 30)" in line[0], line[0]
    finally:
        _kill(pid)


def test_with_kill_leftovers_off_what_a_job_left_runs_on(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(TASKS)
    pid = 0
    try:
        with _worker(tmp_path, GIGQ_KILL_LEFTOVERS="false") as log:
            pid = _run_job(tmp_path, "session")
            # A second job in the same child: the first one's sleep is still left alone.
            _run_job(tmp_path, "group")
            assert is_alive(pid), f"sleep {pid} was ended though kill_leftovers is off"
            assert "left 1 process running" not in log.read_text()
    finally:
        _kill(pid)


def _kill(pid: int) -> None:
    if pid and is_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
