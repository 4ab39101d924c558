"""The current directory on the import path: appended (a module there never shadows an
installed one), and only for the commands that import job functions (`submit`, `worker`).

Run as the real `gigq` console script (and `python -m gigq_cli`) in a folder of the test's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

GIGQ = str(Path(sys.executable).parent / "gigq")

#: Modules GigQ imports after start-up (tabulate for tables, sqlite3 to open the queue).
SHADOWS = ("tabulate", "sqlite3")

TASKS = """
def hello(name="world"):
    return f"hello {name}"
"""


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIGQ_")}
    env.pop("PYTHONPATH", None)
    env["GIGQ_DISABLE_PLUGINS"] = "*"
    return env


def run(folder: Path, *args: str, module: bool = False) -> subprocess.CompletedProcess[str]:
    """`gigq ARGS...` (or `python -m gigq_cli ARGS...`) run in `folder`."""
    command = [sys.executable, "-m", "gigq_cli"] if module else [GIGQ]
    return subprocess.run(
        [*command, *args],
        cwd=folder,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder with job functions (tasks.py)."""
    (tmp_path / "tasks.py").write_text(TASKS)
    return tmp_path


def plant(folder: Path) -> None:
    """Modules that would shadow installed ones, each leaving a marker file when imported."""
    for name in SHADOWS:
        (folder / f"{name}.py").write_text(
            f"import pathlib\npathlib.Path(__file__).with_suffix('.ran').write_text('{name}')\n"
        )


def _markers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.ran"))


def test_submit_and_worker_import_job_functions_from_the_current_directory(folder):
    plant(folder)
    submitted = run(folder, "--db", "jobs.db", "--json", "submit", "tasks:hello", "-p", "name=you")
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)

    worked = run(folder, "--db", "jobs.db", "worker", "--burst")
    assert worked.returncode == 0, worked.stderr

    shown = run(folder, "--db", "jobs.db", "--json", "status", job_id)
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert (info["status"], info["result"]) == ("completed", "hello you")
    # Appended, not first: the installed tabulate and the stdlib sqlite3 were used.
    assert _markers(folder) == []


@pytest.mark.parametrize(
    "args",
    [
        ("list",),
        ("status", "PLACEHOLDER"),
        ("queue", "list"),
        ("stats",),
        ("workflow", "list"),
        ("doctor",),
    ],
    ids=lambda args: " ".join(args),
)
def test_other_commands_never_import_from_the_current_directory(folder, args):
    submitted = run(folder, "--db", "jobs.db", "--json", "submit", "tasks:hello")
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)
    plant(folder)
    args = tuple(job_id if a == "PLACEHOLDER" else a for a in args)

    result = run(folder, "--db", "jobs.db", *args)

    assert result.returncode == 0, result.stderr  # a healthy store: doctor warns at most
    assert "Traceback" not in result.stderr
    assert _markers(folder) == []


def test_python_dash_m_keeps_the_current_directory_last_too(folder):
    submitted = run(folder, "--db", "jobs.db", "submit", "tasks:hello", module=True)
    assert submitted.returncode == 0, submitted.stderr
    plant(folder)

    listed = run(folder, "--db", "jobs.db", "list", module=True)

    assert listed.returncode == 0, listed.stderr
    assert "hello" in listed.stdout
    assert _markers(folder) == []
