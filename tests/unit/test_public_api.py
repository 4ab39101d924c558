"""The public names of `gigq` and `gigq_core` work exactly as DESIGN.md writes them, whatever
else was imported first (each case runs in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PUBLIC = (
    "Job, JobQueue, JobStatus, Worker, Workflow, task, current_job, hookimpl, "
    "setup_logging, close_connections"
)


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=50, check=False
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize("package", ["gigq", "gigq_core"])
def test_the_documented_import_line_gives_the_documented_objects(package):
    done = run(
        f"from {package} import {PUBLIC}\n"
        "import inspect\n"
        "assert inspect.isfunction(task), task\n"
        "assert inspect.isclass(Job) and inspect.isclass(Worker), (Job, Worker)\n"
        "assert callable(current_job) and callable(close_connections)\n"
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "first",
    [
        "from {package} import TaskWrapper",
        "import gigq_core.tasks",
        "from gigq_core.tasks import TaskWrapper",
    ],
)
@pytest.mark.parametrize("package", ["gigq", "gigq_core"])
def test_task_is_the_decorator_even_after_its_module_was_imported(package, first):
    done = run(
        first.format(package=package) + "\n"
        f"from {package} import task\n"
        "import inspect\n"
        "assert not inspect.ismodule(task), f'task is the module {task!r}'\n"
        "@task\n"
        "def double(x):\n"
        "    return 2 * x\n"
        "assert double(2) == 4\n"
    )
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("package", ["gigq", "gigq_core"])
def test_every_name_in_all_resolves(package):
    done = run(
        f"import {package}\n"
        f"missing = [n for n in {package}.__all__ if getattr({package}, n, None) is None]\n"
        "assert not missing, missing\n"
    )
    assert done.returncode == 0, done.stderr
