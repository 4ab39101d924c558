"""Helpers for the CLI tests."""

from __future__ import annotations

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
