"""`gigq worker --reload` (issue 20, item 13), through the real command: a worker runs the
code it started with, unless --reload, which restarts its job processes when a Python file
of the user's code changes."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gigq_core import JobQueue
from tests.cli.helpers import run_gigq, user_environment
from tests.process._harness import stop, wait_until

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]


def _env() -> dict[str, str]:
    """No GIGQ_* from outside; bytecode cached as a user's Python does by default."""
    return user_environment(PYTHONDONTWRITEBYTECODE=None)


def _gigq(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_gigq(folder, "--db", "jobs.db", *args, env=_env())


@contextlib.contextmanager
def _worker(folder: Path, *args: str) -> Iterator[Path]:
    """A `gigq worker ARGS` running in `folder`, once it has started; yields its log file."""
    log = folder / "worker.log"
    with open(log, "wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "gigq_cli", "--db", "jobs.db", "worker", "--create",
             "--polling-interval", "0.2", *args],
            cwd=folder,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_until(lambda: " started (" in log.read_text(), 30, "the worker to start")
        yield log
    finally:
        assert stop(process) == 0, log.read_text()


def _result(folder: Path, function: str) -> Any:
    """Submit a job of `function` and wait for it to complete; its result."""
    submitted = _gigq(folder, "--json", "submit", function)
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)

    def ended() -> dict[str, Any] | None:
        shown: dict[str, Any] = json.loads(_gigq(folder, "--json", "status", job_id).stdout)
        return shown if shown["status"] in {"completed", "failed"} else None

    info = wait_until(ended, 30, "the job to end")
    assert info["status"] == "completed", info
    return info["result"]


def _edit(tasks: Path) -> None:
    """Make `version` return 2: same size, same modification time (an edit within the
    second the old version's bytecode was cached, by `gigq submit` say), which Python's
    bytecode check cannot tell from the old file."""
    before = tasks.stat()
    tasks.write_text(tasks.read_text().replace("return 1", "return 2"))
    os.utime(tasks, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_reload_runs_the_changed_code_in_the_next_job(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.py"
    tasks.write_text("def version():\n    return 1\n")
    with _worker(tmp_path, "--reload") as log:
        assert f"--reload watches {tmp_path.resolve()}" in log.read_text()
        assert _result(tmp_path, "tasks:version") == 1
        _edit(tasks)
        wait_until(lambda: "tasks.py changed" in log.read_text(), 30, "the change to be seen")
        assert _result(tmp_path, "tasks:version") == 2


def test_a_job_running_at_the_change_finishes_on_the_code_it_started_with(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.py"
    tasks.write_text("import time\n\ndef version(wait=0):\n    time.sleep(wait)\n    return 1\n")
    with _worker(tmp_path, "--reload") as log:
        submitted = _gigq(tmp_path, "--json", "submit", "tasks:version", "-p", "wait=2")
        job_id = json.loads(submitted.stdout)
        status = ("--json", "status", job_id)
        wait_until(lambda: json.loads(_gigq(tmp_path, *status).stdout)["status"] == "running",
                   30, "the job to start")  # fmt: skip
        _edit(tasks)
        wait_until(lambda: "tasks.py changed" in log.read_text(), 30, "the change to be seen")
        info = wait_until(
            lambda: (shown := json.loads(_gigq(tmp_path, *status).stdout))["status"]
            in {"completed", "failed"} and shown,
            30, "the job to end",
        )  # fmt: skip
        # Not killed nor handed back: one attempt, with the code it started with.
        assert (info["status"], info["attempts"], info["result"]) == ("completed", 1, 1)
        assert _result(tmp_path, "tasks:version") == 2


def test_without_reload_a_worker_runs_the_code_it_started_with(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.py"
    tasks.write_text("def version():\n    return 1\n")
    with _worker(tmp_path):
        assert _result(tmp_path, "tasks:version") == 1
        _edit(tasks)
        assert _result(tmp_path, "tasks:version") == 1


def test_reload_without_watchfiles_says_how_to_install_it(tmp_path: Path) -> None:
    hidden = "import sys; sys.modules['watchfiles'] = None; from gigq_cli.main import main; main()"
    ran = subprocess.run(
        [sys.executable, "-c", hidden, "--db", "jobs.db", "worker", "--reload"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ran.returncode != 0
    assert ran.stderr.strip().splitlines() == [
        "Error: --reload needs the watchfiles package: pip install 'gigq[reload]' "
        "(or pip install watchfiles)"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--once",), "Error: --reload does not go with --once"),
        (("--executor", "inline"), "Error: --reload restarts the job processes"),
    ],
)
def test_reload_refuses_what_it_cannot_reload(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    JobQueue(str(tmp_path / "jobs.db")).close()  # a worker serves only an existing queue
    ran = _gigq(tmp_path, "worker", "--reload", *args)
    assert ran.returncode != 0
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), ran.stderr
