"""Function policy with a real worker (docs/guarantees.md; the inline variants are in
tests/unit/test_worker.py and tests/unit/test_queue.py): `os:system` and friends are refused
at submit, and when written into the database by raw SQL a worker process fails them with
"not allowed" without ever running them (their side effect, a file, never appears)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gigq_core import DisallowedFunctionError, InvalidJobError, Job, JobQueue, make_plugin_manager
from tests.process._harness import (
    ROOT,
    Fleet,
    all_final,
    chaos_job,
    environment,
    executions,
    job_row,
    ledger_check,
    stop,
    submit,
    wait_until,
)

pytestmark = [pytest.mark.process, pytest.mark.timeout(90)]


def forbidden(marker: Path) -> dict[str, dict[str, object]]:
    """Function path -> params that would create `marker` if the call ever ran."""
    touch = f"touch {marker}"
    return {
        "os:system": {"command": touch},
        "subprocess:run": {"args": ["touch", str(marker)]},
        "subprocess:check_call": {"args": ["touch", str(marker)]},
        "builtins:eval": {"source": f"open({str(marker)!r}, 'w')"},
        "builtins:exec": {"source": f"open({str(marker)!r}, 'w')"},
        "pickle:loads": {"data": "x"},
        "os.path:join": {"a": "x"},
        "shutil:rmtree": {"path": str(marker.parent / "nothing-here")},
    }


def test_disallowed_functions_are_refused_at_submit_and_failed_by_a_worker(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    db, ledger, marker = tmp_path / "jobs.db", tmp_path / "ledger", tmp_path / "marker"
    calls = forbidden(marker)
    pm = make_plugin_manager(load_entrypoints=False)
    with JobQueue(str(db), plugin_manager=pm) as queue:
        for function, params in calls.items():
            with pytest.raises(DisallowedFunctionError, match="not allowed"):
                queue.submit(Job("evil", function, params=params))
        assert queue.stats()["total"] == 0
    # Written behind GigQ's back: valid jobs, then their function swapped by raw SQL.
    evil = submit(db, [chaos_job("work", ledger=str(ledger)) for _ in calls])
    normal = submit(db, [chaos_job("work", ledger=str(ledger)) for _ in range(5)])
    conn = sqlite3.connect(db)
    with conn:
        for job_id, (function, params) in zip(evil, calls.items(), strict=True):
            conn.execute(
                "UPDATE jobs SET function = ?, params = ? WHERE id = ?",
                (function, json.dumps(params), job_id),
            )
    conn.close()
    with Fleet(db, tmp_path) as fleet:
        worker = fleet.start(concurrency=2)
        wait_until(lambda: all_final(db), 45, "the worker to fail or run every job")
        assert stop(worker) == 0, worker.stderr()
    for job_id, function in zip(evil, calls, strict=True):
        job = job_row(db, job_id)
        assert (job["status"], job["attempts"]) == ("failed", 1), (function, job)
        assert "not allowed" in job["error"], (function, job["error"])
        assert [r["status"] for r in executions(db, job_id)] == ["failed"]
    assert not marker.exists(), "a disallowed function ran"
    assert all(job_row(db, job_id)["status"] == "completed" for job_id in normal)
    summary = ledger_check(
        db,
        ledger,
        faults=0,
        submitted=[*evil, *normal],
        expect=None,
        name="function-policy",
        started=started,
        refused_at_submit=len(calls),
        failed_by_worker=len(evil),
    )
    assert summary.executions == len(normal), "a disallowed job reached the ledger"


#: A package of jobs, as a user's application would have: one real job, a stdlib function
#: it imported, and a private helper.
MYAPP = {
    "myapp/__init__.py": "",
    "myapp/jobs.py": (
        "import os\n"
        "from os import system\n"
        "from subprocess import run\n\n"
        "def work(path):\n"
        "    with open(path, 'a') as f:\n"
        "        f.write('ran\\n')\n"
        "    return 1\n\n"
        "def _helper(command):\n"
        "    return os.system(command)\n"
    ),
}


def make_app(folder: Path) -> Path:
    for name, text in MYAPP.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


#: Refused once resolved (by a worker, or by `gigq submit`, which imports the function), not
#: by name alone: `queue.submit` of a string path does not import the user's module.
RESOLVED_ONLY = frozenset({"myapp.jobs:system", "myapp.jobs:run"})


def attacks(marker: Path, db: Path) -> dict[str, dict[str, object]]:
    """Function path -> params: each got past the policy before issue 16's fixes, and each
    would create `marker` (or the database `db`) if it ever ran."""
    touch = f"touch {marker}"
    return {
        # A dotted name follows attributes from an allowed module to anything it imports.
        "gigq_cli.main:os.system": {"command": touch},
        "myapp.jobs:os.system": {"command": touch},
        # A name the module imported from the standard library.
        "myapp.jobs:system": {"command": touch},
        "myapp.jobs:run": {"args": ["touch", str(marker)]},
        # A private helper of an allowed module.
        "myapp.jobs:_helper": {"command": touch},
        # Packaging tools' helpers that spawn processes.
        "setuptools._distutils.spawn:spawn": {"cmd": ["touch", str(marker)]},
        "pip._internal.utils.subprocess:call_subprocess": {"cmd": ["touch", str(marker)]},
        # GigQ's own CLI, by module and as the console script's __main__.
        "gigq_cli.main:main": {"argv": ["--db", str(db), "submit", "tests.jobs:add"]},
        "__main__:main": {"argv": ["--db", str(db), "submit", "tests.jobs:add"]},
    }


@pytest.mark.parametrize("allowed", ["", "myapp.*,__main__"], ids=["default", "allow-list"])
def test_ways_past_the_policy_are_closed(tmp_path: Path, allowed: str) -> None:
    """Each way past the function policy found in issue 16, written into the store by raw
    SQL (as whoever can write the database could): a real worker fails each one with "not
    allowed" and never runs it, with and without an allow-list, while a real job of the
    same package still runs."""
    app = make_app(tmp_path / "app")
    db, marker, other = tmp_path / "jobs.db", tmp_path / "marker", tmp_path / "other.db"
    out = tmp_path / "ran"
    calls = attacks(marker, other)
    pm = make_plugin_manager(load_entrypoints=False)
    settings = {"allowed_modules": allowed.split(",")} if allowed else {}
    with JobQueue(str(db), plugin_manager=pm, **settings) as queue:
        for function, params in calls.items():
            if function.startswith("__main__") or function in RESOLVED_ONLY:
                continue  # a program may submit its own __main__ functions; see RESOLVED_ONLY
            with pytest.raises(Exception, match=r"not allowed|private|module-level") as err:
                queue.submit(Job("evil", function, params=params))
            assert isinstance(err.value, DisallowedFunctionError | InvalidJobError)
        good = queue.submit(Job("good", "myapp.jobs:work", params={"path": str(out)}))
        evil = [queue.submit(Job("evil", "myapp.jobs:work", params={})) for _ in calls]
    conn = sqlite3.connect(db)
    with conn:
        for job_id, (function, params) in zip(evil, calls.items(), strict=True):
            conn.execute(
                "UPDATE jobs SET function = ?, params = ? WHERE id = ?",
                (function, json.dumps(params), job_id),
            )
    conn.close()
    env = {"PYTHONPATH": os.pathsep.join([str(app), str(ROOT)])}
    if allowed:
        env["GIGQ_ALLOWED_MODULES"] = allowed
    with Fleet(db, tmp_path) as fleet:
        worker = fleet.start(env=env)
        wait_until(lambda: all_final(db), 45, "the worker to fail or run every job")
        assert stop(worker) == 0, worker.stderr()
    for job_id, function in zip(evil, calls, strict=True):
        job = job_row(db, job_id)
        assert (job["status"], job["attempts"]) == ("failed", 1), (function, job)
        assert "not allowed" in job["error"], (function, job["error"])
    assert not marker.exists(), "a refused function ran"
    assert not other.exists(), "a job ran the gigq command"
    assert job_row(db, good)["status"] == "completed"
    assert out.read_text() == "ran\n"
    warned = "allowed_modules is not set" in worker.stderr()
    assert warned == (not allowed), worker.stderr()


def test_the_cli_refuses_a_dotted_function_with_one_sentence(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    result = subprocess.run(
        [sys.executable, "-m", "gigq_cli", "--db", str(tmp_path / "jobs.db"), "submit",
         "gigq_cli.main:os.system", "-p", f"command=touch {marker}"],
        capture_output=True, text=True, cwd=ROOT, env=environment(), timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "no dots after the colon" in result.stderr
    assert not marker.exists()
