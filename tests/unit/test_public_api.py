"""The public names of `gigq` work exactly as the README's Python API shows them, and
`gigq_core` gives the same ones but the facade's own, whatever else was imported first
(each case runs in a fresh interpreter). The facade's queue returns dicts; the core's
returns records."""

from __future__ import annotations

import subprocess
import sys

import pytest

PUBLIC = "Job, JobQueue, JobStatus, Worker, Workflow, task, current_job, hookimpl, setup_logging"
#: The original's names that only the facade keeps.
FACADE_ONLY = "close_connections"


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=50, check=False
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize("package", ["gigq", "gigq_core"])
def test_the_documented_import_line_gives_the_documented_objects(package):
    names = PUBLIC + (f", {FACADE_ONLY}" if package == "gigq" else "")
    done = run(
        f"from {package} import {names}\n"
        "import inspect\n"
        "assert inspect.isfunction(task), task\n"
        "assert inspect.isclass(Job) and inspect.isclass(Worker), (Job, Worker)\n"
        "assert callable(current_job)\n"
        + ("assert callable(close_connections)\n" if package == "gigq" else "")
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.timeout(60)
def test_the_facade_keeps_the_original_shapes_and_the_core_its_own():
    done = run(
        "import gigq, gigq_core\n"
        "assert issubclass(gigq.JobQueue, gigq_core.JobQueue)\n"
        "assert issubclass(gigq.Worker, gigq_core.Worker)\n"
        "assert gigq.Worker.queue_class is gigq.JobQueue\n"
        "original = ('get_status', 'list_jobs', 'requeue', 'clear_completed')\n"
        "assert all(callable(getattr(gigq.JobQueue, n)) for n in original)\n"
        "assert not [n for n in original if hasattr(gigq_core.JobQueue, n)]\n"
        "assert 'close_connections' in gigq.__all__\n"
        "assert 'close_connections' not in gigq_core.__all__\n"
        "assert set(gigq_core.__all__) < set(gigq.__all__)\n"
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
