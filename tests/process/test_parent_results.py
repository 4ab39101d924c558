"""The parent results cap under the process executor: a `gigq worker --burst` (children
forked, the supervisor fetching parent results) fails a fan-in job whose parents' results
are over `max_parent_results` at once, naming the setting, and passes them when they fit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gigq import JobQueue
from gigq_core import Job, make_plugin_manager

pytestmark = [pytest.mark.process, pytest.mark.timeout(150)]

ROOT = Path(__file__).resolve().parents[2]


def drain(db: Path, cap: int) -> None:
    """Run `gigq worker --burst` (process executor) on `db` with `max_parent_results=cap`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIGQ_")}
    env.update(
        GIGQ_MAX_PARENT_RESULTS=str(cap),
        GIGQ_DISABLE_PLUGINS="*",
        PYTHONPATH=str(ROOT),  # tests.jobs
    )
    done = subprocess.run(
        [sys.executable, "-m", "gigq_cli", "--db", str(db), "worker", "--burst"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("cap", "status"), [(1_205, "failed"), (1_206, "completed")])
def test_fan_in_over_the_cap_fails_at_once(tmp_path: Path, cap: int, status: str) -> None:
    db = tmp_path / "jobs.db"
    with JobQueue(str(db), plugin_manager=make_plugin_manager(load_entrypoints=False)) as queue:
        parents = [Job(f"p{n}", "tests.jobs:returns_text", params={"size": 400}) for n in range(3)]
        child = Job("child", "tests.jobs:takes_parents", dependencies=parents, retry_delay=0)
        queue.submit_many([*parents, child])

        drain(db, cap)

        info = queue.get_status(child.id)
        assert info["status"] == status, info["error"]
        if status == "failed":
            assert info["attempts"] == 1
            [execution] = info["executions"]
            assert execution["error_type"] == "PermanentError"
            assert "1,206 bytes together, over the limit of 1,205" in info["error"]
            assert "(setting max_parent_results)" in info["error"]
        else:
            assert sorted(info["result"].values()) == ["a" * 400] * 3
