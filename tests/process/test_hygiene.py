"""What a job process gets from its worker, and what it leaves behind: processes it starts in
a new session end with it on timeout and cancel (Linux: the job process is a child
subreaper), it holds no descriptor but its standard streams and its own channel, and GigQ's
secrets are not in its environment."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from gigq_core import JobQueue, make_plugin_manager
from tests.process._harness import (
    Fleet,
    all_final,
    chaos_job,
    is_alive,
    job_row,
    stop,
    submit,
    wait_until,
)

pytestmark = [
    pytest.mark.process,
    pytest.mark.timeout(120),
    pytest.mark.skipif(sys.platform != "linux", reason="reads /proc; subreapers are Linux's"),
]


def _pid(pidfile: Path) -> int:
    return int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 30, "a pid"))


def _result(db: Path, job_id: str) -> Any:
    row = job_row(db, job_id)
    assert row["status"] == "completed", row
    return json.loads(row["result"])


@pytest.mark.parametrize("detach", [False, True], ids=["own-child", "detached"])
def test_timeout_kills_what_the_job_started_in_a_new_session(tmp_path: Path, detach: bool) -> None:
    db, ledger, pidfile = tmp_path / "jobs.db", tmp_path / "ledger", tmp_path / "escaped"
    (job,) = submit(
        db,
        [
            chaos_job(
                "escape_the_group",
                ledger=str(ledger),
                pidfile=str(pidfile),
                seconds=60,
                detach=detach,
                timeout=1.5,
                max_attempts=1,
            )
        ],
    )
    escaped = 0
    try:
        with Fleet(db, tmp_path) as fleet:
            worker = fleet.start()
            escaped = _pid(pidfile)
            wait_until(lambda: all_final(db, [job]), 30, "the job to time out")
            wait_until(lambda: not is_alive(escaped), 5, f"sleep {escaped} to end")
            assert stop(worker) == 0, worker.stderr()
        assert job_row(db, job)["status"] == "timeout"
    finally:
        _kill(escaped)


@pytest.mark.parametrize("detach", [False, True], ids=["own-child", "detached"])
def test_cancel_kills_what_the_job_started_in_a_new_session(tmp_path: Path, detach: bool) -> None:
    db, ledger, pidfile = tmp_path / "jobs.db", tmp_path / "ledger", tmp_path / "escaped"
    (job,) = submit(
        db,
        [
            chaos_job(
                "escape_the_group",
                ledger=str(ledger),
                pidfile=str(pidfile),
                seconds=60,
                detach=detach,
                max_attempts=1,
            )
        ],
    )
    escaped = 0
    try:
        with Fleet(db, tmp_path) as fleet:
            worker = fleet.start()
            escaped = _pid(pidfile)
            with JobQueue(str(db), plugin_manager=make_plugin_manager(False)) as queue:
                assert queue.cancel(job)
            wait_until(lambda: all_final(db, [job]), 30, "the job to be cancelled")
            wait_until(lambda: not is_alive(escaped), 5, f"sleep {escaped} to end")
            assert stop(worker) == 0, worker.stderr()
        assert job_row(db, job)["status"] == "cancelled"
    finally:
        _kill(escaped)


def _kill(pid: int) -> None:
    """SIGKILL a sleep the test made escape, if the worker left it running."""
    if pid and is_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_job_process_holds_no_channel_but_its_own(tmp_path: Path) -> None:
    db, ledger = tmp_path / "jobs.db", tmp_path / "ledger"
    # Two children at once (each forked beside the other's pipe), and replacements forked
    # later, after the worker opened its other connections and its wake-up pipe.
    ids = submit(db, [chaos_job("open_descriptors", ledger=str(ledger)) for _ in range(6)])
    with Fleet(db, tmp_path) as fleet:
        worker = fleet.start(None, "--max-jobs-per-child", "1", concurrency=2)
        wait_until(lambda: all_final(db, ids), 60, "every job to end")
        assert stop(worker) == 0, worker.stderr()
    for job_id in ids:
        found = _result(db, job_id)
        extra = {int(fd): target for fd, target in found["job"].items() if int(fd) > 2}
        sockets = [t for t in extra.values() if t.startswith("socket:")]
        # Its own channel to the supervisor, and no other pipe, socket or special file:
        # regular files only (the database SQLite still refers to), close-on-exec.
        assert len(sockets) == 1, found
        assert all(t.startswith("/") for t in extra.values() if t not in sockets), found
        assert [t for t in extra.values() if t.startswith("/") and not Path(t).is_file()] == []
        assert sorted(int(fd) for fd in found["program"]) == [0, 1, 2], found


def test_job_can_open_its_own_database(tmp_path: Path) -> None:
    db, ledger = tmp_path / "jobs.db", tmp_path / "ledger"
    # The job process keeps the worker's SQLite descriptors: SQLite's state about the open
    # database is copied by fork, and refers to them.
    ids = submit(
        db, [chaos_job("submit_follow_up", ledger=str(ledger), db=str(db)) for _ in range(4)]
    )
    with Fleet(db, tmp_path) as fleet:
        worker = fleet.start(None, "--max-jobs-per-child", "1", concurrency=2)
        follow_ups = [
            wait_until(lambda i=i: all_final(db, [i]) and _result(db, i), 30, "a follow-up")
            for i in ids
        ]
        wait_until(lambda: all_final(db, follow_ups), 30, "the follow-up jobs to end")
        assert stop(worker) == 0, worker.stderr()
    assert {job_row(db, i)["status"] for i in follow_ups} == {"completed"}


def test_job_environment_has_no_gigq_secrets(tmp_path: Path) -> None:
    db, ledger = tmp_path / "jobs.db", tmp_path / "ledger"
    (job,) = submit(db, [chaos_job("environment", ledger=str(ledger))])
    secrets = {
        "GIGQ_NOTIFY_WEBHOOK_URL": "https://hooks.example.com/s3cret-path",
        "GIGQ_NOTIFY_HEADERS": "Authorization: Bearer s3cret-token",
        "GIGQ_API_TOKEN": "s3cret",
        "GIGQ_TEST_CRASH": "",
        # --db wins for the worker; a job that opens JobQueue() still finds its queue.
        "GIGQ_DB": "postgresql://gigq:s3cret@127.0.0.1:5432/test?password=s3cret&app=x",
    }
    kept = {
        "GIGQ_DISABLE_PLUGINS": "*",
        "GIGQ_LEASE": "2",
        "GIGQ_DURABILITY": "normal",  # a setting the SQLite plugin declares
        "MY_APP_SETTING": "s3cret-is-ours",
    }
    with Fleet(db, tmp_path) as fleet:
        worker = fleet.start(None, env={**secrets, **kept})
        wait_until(lambda: all_final(db, [job]), 30, "the job to end")
        assert stop(worker) == 0, worker.stderr()
    env: dict[str, str] = _result(db, job)
    for name in ("GIGQ_NOTIFY_WEBHOOK_URL", "GIGQ_NOTIFY_HEADERS", "GIGQ_API_TOKEN"):
        assert name not in env
    assert "GIGQ_TEST_CRASH" not in env
    assert env["GIGQ_DB"] == "postgresql://gigq@127.0.0.1:5432/test?app=x"
    assert {k: env.get(k) for k in kept} == kept
    assert not [k for k, v in env.items() if "s3cret" in v and k != "MY_APP_SETTING"], env


@pytest.mark.parametrize("detach", [False, True], ids=["own-child", "detached"])
def test_what_a_job_leaves_running_ends_with_its_job_process(tmp_path: Path, detach: bool) -> None:
    db, ledger, pidfile = tmp_path / "jobs.db", tmp_path / "ledger", tmp_path / "escaped"
    job = chaos_job(
        "escape_the_group", ledger=str(ledger), pidfile=str(pidfile), seconds=0, detach=detach
    )
    (job_id,) = submit(db, [job])
    escaped = 0
    try:
        with Fleet(db, tmp_path) as fleet:
            # The child retires after its job: whatever the job left below it goes too.
            worker = fleet.start(None, "--max-jobs-per-child", "1")
            escaped = _pid(pidfile)
            wait_until(lambda: all_final(db, [job_id]), 30, "the job to end")
            wait_until(lambda: not is_alive(escaped), 5, f"sleep {escaped} to end")
            assert stop(worker) == 0, worker.stderr()
        assert job_row(db, job_id)["status"] == "completed"
    finally:
        _kill(escaped)


def test_orphans_a_job_process_adopts_are_reaped(tmp_path: Path) -> None:
    db, ledger, pidfile = tmp_path / "jobs.db", tmp_path / "ledger", tmp_path / "escaped"
    # A daemon that exits soon is adopted by the job process (a subreaper), which must reap
    # it: no zombie is left for the next job of the same process to find.
    daemon, after = submit(
        db,
        [
            chaos_job(
                "escape_the_group",
                ledger=str(ledger),
                pidfile=str(pidfile),
                seconds=1,
                detach=True,
                lasts=0.1,
            ),
            chaos_job("zombie_children", ledger=str(ledger)),
        ],
    )
    with Fleet(db, tmp_path) as fleet:
        worker = fleet.start()
        wait_until(lambda: all_final(db, [daemon, after]), 30, "both jobs to end")
        assert stop(worker) == 0, worker.stderr()
    assert job_row(db, daemon)["status"] == "completed"
    first, second = (line.split()[2] for line in ledger.read_text().splitlines())
    assert first == second, "the two jobs ran in different processes"
    assert _result(db, after) == []
