"""Helpers for the CLI tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pluggy
from click.testing import Result

from gigq_core import Job, JobQueue, Worker


def submit(jobs: JobQueue, function: str = "tests.jobs:add", **kwargs: Any) -> str:
    """Submit one job of tests/jobs.py; keyword arguments go to Job."""
    name = kwargs.pop("name", function.rsplit(":", 1)[-1])
    params = kwargs.pop("params", {"a": 1, "b": 2} if function == "tests.jobs:add" else {})
    return jobs.submit(Job(name, function, params=params, **kwargs))


def run_one(target: str, pm: pluggy.PluginManager, **kwargs: Any) -> bool:
    """Run at most one ready job inline, as a worker would; True if one was claimed."""
    worker = Worker(target, executor="inline", plugin_manager=pm, **kwargs)
    try:
        return worker.process_one()
    finally:
        worker.close()


def assert_user_error(result: Result, code: int = 1, contains: str = "") -> None:
    """One sentence on stderr, no traceback, nothing on stdout, exit `code`."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: ")
    assert contains.lower() in lines[0].lower(), lines[0]


def user_environment(**extra: str | None) -> dict[str, str]:
    """This process's environment without GIGQ_* settings from outside (as a user's shell
    has), with `extra` set (None: that variable removed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIGQ_")}
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_gigq(
    folder: Path, *args: str | bytes, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m gigq_cli ARGS...` run in `folder`, as a user runs it: a process of its own,
    in `env` (default: `user_environment()`). Bytes arguments are passed as they are (a
    shell passes a file name or pasted text that is not UTF-8 so)."""
    argv = [os.fsencode(arg) if isinstance(arg, str) else arg for arg in args]
    return subprocess.run(
        [os.fsencode(sys.executable), b"-m", b"gigq_cli", *argv],
        cwd=folder,
        env=user_environment() if env is None else env,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
    )
