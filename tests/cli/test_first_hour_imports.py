"""A worker started in the wrong folder, through the real `gigq` command (issue 20, item
2): it hands back the jobs whose module it cannot find instead of failing them, says where
it looked and what to do; `gigq worker --path DIR` finds the code; a module that exists
but cannot be used still fails its job."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from gigq_core import Job, JobQueue, make_plugin_manager
from tests.cli.helpers import run_gigq, user_environment

TASKS = """
def add(a, b):
    return a + b
"""

#: A module that exists but imports a package nobody has: broken code, not a wrong folder.
BROKEN = "import no_such_dependency_i20\n\ndef f():\n    return 1\n"
#: A module that raises while it is imported.
RAISING = "raise RuntimeError('boom at import')\n\ndef f():\n    return 1\n"


def gigq(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m gigq_cli ARGS...` in `folder`, without GIGQ_* settings from outside."""
    return run_gigq(folder, *args, env=user_environment(PYTHONPATH=None, GIGQ_DISABLE_PLUGINS="*"))


def status(folder: Path, db: Path, job_id: str) -> dict[str, object]:
    shown = gigq(folder, "--db", str(db), "--json", "status", job_id)
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert isinstance(info, dict)
    return info


@pytest.fixture
def code(tmp_path: Path) -> Path:
    """The folder of the job functions (tasks.py)."""
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "tasks.py").write_text(TASKS)
    return folder


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def submit(code: Path, db: Path, function: str) -> str:
    done = gigq(code, "--db", str(db), "--json", "submit", function, "-p", "a=1", "-p", "b=2")
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)
    assert isinstance(job_id, str)
    return job_id


def test_a_worker_in_the_wrong_folder_hands_the_job_back_and_says_what_to_do(
    code: Path, elsewhere: Path, tmp_path: Path
) -> None:
    db = tmp_path / "jobs.db"
    job_id = submit(code, db, "tasks:add")

    ran = gigq(elsewhere, "--db", str(db), "worker", "--burst")

    assert ran.returncode == 0, ran.stderr
    [error] = [line for line in ran.stderr.splitlines() if " ERROR gigq: " in line]
    assert f"cannot import module 'tasks' for job {job_id} ('add', function tasks:add)" in error
    assert f"{elsewhere} (the current folder)" in error
    assert "Start the worker in the folder of your code, or pass --path DIR." in error
    assert "handed back (its attempt not counted)" in error
    info = status(code, db, job_id)
    assert (info["status"], info["attempts"]) == ("pending", 0)
    assert [e["status"] for e in info["executions"]] == ["handed_back"]  # type: ignore[union-attr]

    fixed = gigq(elsewhere, "--db", str(db), "worker", "--burst", "--path", str(code))

    assert fixed.returncode == 0, fixed.stderr
    info = status(code, db, job_id)
    assert (info["status"], info["attempts"], info["result"]) == ("completed", 1, 3)


def test_path_is_appended_so_a_module_there_never_shadows_an_installed_one(
    code: Path, elsewhere: Path, tmp_path: Path
) -> None:
    (code / "sqlite3.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_suffix('.ran').write_text('ran')\n"
    )
    db = tmp_path / "jobs.db"
    job_id = submit(code, db, "tasks:add")
    (code / "sqlite3.ran").unlink(missing_ok=True)  # submit ran in that folder

    ran = gigq(elsewhere, "--db", str(db), "worker", "--burst", "--path", str(code))

    assert ran.returncode == 0, ran.stderr
    assert status(code, db, job_id)["status"] == "completed"
    assert not (code / "sqlite3.ran").exists()


def test_a_path_that_is_not_a_folder_is_one_sentence(elsewhere: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    for given in (tmp_path / "missing", tmp_path / "file"):
        ran = gigq(elsewhere, "--db", str(tmp_path / "jobs.db"), "worker", "--path", str(given))

        assert ran.returncode == 2
        assert "Error: Invalid value for '--path'" in ran.stderr
        assert "Traceback" not in ran.stderr


@pytest.mark.parametrize(
    ("module", "source", "function", "expected"),
    [
        ("broken", BROKEN, "broken:f", "No module named 'no_such_dependency_i20'"),
        ("raising", RAISING, "raising:f", "boom at import"),
        ("tasks", TASKS, "tasks:nope", "nope"),
    ],
)
def test_a_module_that_is_found_but_cannot_be_used_still_fails_the_job(
    code: Path,
    tmp_path: Path,
    module: str,
    source: str,
    function: str,
    expected: str,
) -> None:
    db = tmp_path / "jobs.db"
    # Submitted by a program that does not have the module (`gigq submit` would refuse the
    # job where it does), as another machine may.
    with JobQueue(str(db), plugin_manager=make_plugin_manager(load_entrypoints=False)) as jobs:
        job_id = jobs.submit(Job("f", function, max_attempts=1))
    (code / f"{module}.py").write_text(source)

    ran = gigq(code, "--db", str(db), "worker", "--burst")

    assert ran.returncode == 0, ran.stderr
    assert "handed back" not in ran.stderr
    info = status(code, db, job_id)
    assert (info["status"], info["attempts"]) == ("failed", 1)
    assert expected in str(info["error"])
