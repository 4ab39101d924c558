"""What a new user hits in the first hour, through the real `gigq` command (a subprocess,
as a user runs it): each test reproduces one report and checks its fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.helpers import run_gigq

ROOT = Path(__file__).resolve().parents[2]


def gigq(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m gigq_cli ARGS...` run in `folder`, with no GIGQ_* settings from outside."""
    return run_gigq(folder, *args)


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
        [sys.executable, "-m", "gigq_cli", "--db", "jobs.db", "worker", "--create",
         "--worker-id", "w-killed"],
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


def test_submit_takes_what_the_python_api_takes(folder: Path) -> None:
    (folder / "params.json").write_text('{"a": 1, "b": 2}')
    (folder / "big.txt").write_text("x" * 100_000)
    first = gigq(
        folder, "--json", "submit", "tasks:add", "--params-file", "params.json",
        "--unique-key", "k1", "--unique-scope", "success",
        "--run-at", "2030-01-01T09:00:00+01:00", "--retry", 'fixed:{"delay": 5}',
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    job_id = json.loads(first.stdout)
    info = json.loads(gigq(folder, "--json", "status", job_id).stdout)
    assert info["params"] == {"a": 1, "b": 2}
    assert (info["unique_key"], info["unique_scope"]) == ("k1", "success")
    assert info["run_at"] == "2030-01-01T08:00:00+00:00"
    assert (info["retry"], info["retry_params"]) == ("fixed", {"delay": 5})

    again = gigq(folder, "submit", "tasks:add", "-p", "a=1", "-p", "b=1", "--unique-key", "k1")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"Already queued with unique key 'k1': {job_id}"

    piped = subprocess.run(
        [sys.executable, "-m", "gigq_cli", "--json", "submit", "tasks:add", "--params-json", "-",
         "-p", "b=@big.txt"],
        cwd=folder, input='{"a": "y"}', capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    params = json.loads(gigq(folder, "--json", "status", json.loads(piped.stdout)).stdout)["params"]
    assert params == {"a": "y", "b": "x" * 100_000}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--run-at", "tomorrow"), "--run-at 'tomorrow' is not an ISO 8601 time"),
        (("--retry", "fixed:{bad"), "--retry fixed's parameters is not valid JSON"),
        (("--params-file", "missing.json"), "--params-file: cannot read missing.json"),
        (("--params-json", "{}", "--params-file", "p.json"), "not both"),
        (("-p", "a=@missing.txt"), "--param a: cannot read missing.txt"),
    ],
)
def test_bad_submit_options_get_one_sentence(folder: Path, args: tuple[str, ...], message: str):
    result = gigq(folder, "submit", "tasks:add", *args)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (folder / "gigq.db").exists() or "submitted" not in result.stdout


@pytest.mark.parametrize("command", [("list",), ("submit", "tasks:add"), ("worker", "--burst")])
def test_a_directory_given_as_the_database_gets_one_sentence(
    folder: Path, command: tuple[str, ...]
) -> None:
    (folder / "data").mkdir()
    result = gigq(folder, "--db", "data", *command)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        "Error: --db data is a directory; give the path of a database file in it, "
        "e.g. --db data/gigq.db"
    )


def test_params_that_do_not_fit_the_function_are_refused_at_submit(folder: Path) -> None:
    result = gigq(folder, "submit", "tasks:add", "-p", "a=1", "-p", "c=2")
    assert result.returncode == 1
    # The first submit in a folder creates the queue (and says so) before reading the job.
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: the params of job 'add' do not fit tasks:add(a, b): "
        "missing a required argument: 'b'"
    )
    assert "No jobs found." in gigq(folder, "list").stdout  # nothing stored
    extra = gigq(folder, "submit", "tasks:add", "-p", "a=1", "-p", "b=2", "-p", "c=3")
    assert extra.returncode == 1
    assert "got an unexpected keyword argument 'c'" in extra.stderr
    assert gigq(folder, "submit", "tasks:add", "-p", "a=1", "-p", "b=2").returncode == 0
