"""`gigq wait`: exit 0 all completed, 3 some ended otherwise, 124 its timeout passed."""

from __future__ import annotations

import json
import threading
import time

import pluggy

from gigq_core import JobQueue

from .conftest import Run
from .helpers import assert_user_error, run_one, submit


def test_wait_exits_0_when_all_completed(
    gigq: Run, queue: JobQueue, db: str, pm: pluggy.PluginManager
) -> None:
    ids = [submit(queue) for _ in range(2)]
    while run_one(db, pm):
        pass
    result = gigq("wait", ids[0][:8], ids[1])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0].split() == ["id", "name", "status"]
    assert result.stdout.endswith("All finished: 2 completed.\n")
    assert json.loads(gigq("--json", "wait", *ids).stdout) == dict.fromkeys(ids, "completed")


def test_wait_exits_3_when_some_ended_otherwise(
    gigq: Run, queue: JobQueue, db: str, pm: pluggy.PluginManager
) -> None:
    good = submit(queue)
    bad = submit(queue, "tests.jobs:fail", max_attempts=1)
    while run_one(db, pm):
        pass
    result = gigq("wait", good, bad)
    assert result.exit_code == 3
    assert "All finished: 1 completed, 1 failed." in result.stdout
    cancelled = submit(queue)
    queue.cancel(cancelled)
    assert gigq("--json", "wait", cancelled).exit_code == 3


def test_wait_exits_124_when_its_timeout_passes(gigq: Run, queue: JobQueue) -> None:
    job_id = submit(queue)
    started = time.monotonic()
    result = gigq("wait", job_id, "--timeout", "0.3")
    assert result.exit_code == 124
    assert time.monotonic() - started < 5
    assert "Timed out after 0.3 s: 1 pending." in result.stderr
    assert "Traceback" not in result.stderr
    assert gigq("wait", job_id, "--timeout", "0").exit_code == 124


def test_wait_blocks_until_a_worker_finishes_the_job(
    gigq: Run, queue: JobQueue, db: str, pm: pluggy.PluginManager
) -> None:
    job_id = submit(queue)

    def work_later() -> None:
        time.sleep(0.3)
        run_one(db, pm)

    thread = threading.Thread(target=work_later)
    thread.start()
    try:
        result = gigq("--json", "wait", job_id, "--timeout", "30")
    finally:
        thread.join(timeout=30)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {job_id: "completed"}


def test_wait_errors(gigq: Run, queue: JobQueue) -> None:
    assert_user_error(gigq("wait", "nope"), 1, "no job with id 'nope'")
    assert gigq("wait").exit_code == 2
    assert gigq("wait", "x", "--timeout", "soon").exit_code == 2
