"""Every exit code of docs/guarantees.md D10, each produced through the CLI by its own fault:
0, 1, 2, 3 and 124 (`gigq wait`), 65, 69, 74, 75, 77 and 78."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pluggy
import pytest

from gigq_core import JobQueue, hookimpl
from gigq_core.errors import StorageUnavailableError
from gigq_sqlite import _connection

from .conftest import Run
from .helpers import assert_user_error, run_one, submit


def test_0_ok(gigq: Run, queue: JobQueue) -> None:
    submit(queue)
    result = gigq("list")
    assert result.exit_code == 0, result.output
    assert "add" in result.stdout


def test_1_user_error_unknown_id(gigq: Run, queue: JobQueue) -> None:
    assert_user_error(gigq("status", "no-such-id"), 1, "no job")


def test_1_user_error_missing_database_for_a_read_command(gigq: Run, db: str) -> None:
    assert_user_error(gigq("stats"), 1, "does not exist")
    assert not Path(db).exists()


def test_2_usage_error(gigq: Run, queue: JobQueue) -> None:
    for args in (["no-such-command"], ["list", "--limit", "0"], ["list", "--no-such-option"]):
        result = gigq(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output


def test_3_wait_some_ended_otherwise(gigq: Run, queue: JobQueue, db: str, pm) -> None:
    job_id = submit(queue, "tests.jobs:fail", max_attempts=1)
    assert run_one(db, pm)
    result = gigq("wait", job_id, "--timeout", "10")
    assert result.exit_code == 3, result.output


def test_124_wait_timeout_passed(gigq: Run, queue: JobQueue) -> None:
    job_id = submit(queue)
    result = gigq("wait", job_id, "--timeout", "0.2")
    assert result.exit_code == 124, result.output


def test_65_garbage_database(gigq: Run, tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"\x00garbage" * 1000)
    assert_user_error(gigq("stats", db=str(path)), 65, "not a GigQ database")


def test_65_newer_schema(gigq: Run, queue: JobQueue, db: str) -> None:
    queue.close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    assert_user_error(gigq("submit", "tests.jobs:noop"), 65, "newer")


class Unreachable:
    """A storage plugin whose server is never there."""

    @hookimpl
    def gigq_storage(self, url: str, options: dict[str, Any]) -> None:
        if url.startswith("unreachable://"):
            raise StorageUnavailableError(f"cannot reach the server of {url}")


def test_69_storage_unavailable(gigq: Run, pm: pluggy.PluginManager) -> None:
    pm.register(Unreachable(), name="unreachable")
    assert_user_error(gigq("list", db="unreachable://queue"), 69, "cannot reach")


def test_74_disk_full(gigq: Run, queue: JobQueue, db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    kept = submit(queue)
    queue.close()
    opener = _connection.open_connection

    def small_disk(uri: str, busy_timeout: float) -> sqlite3.Connection:
        conn = opener(uri, busy_timeout)
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full at this size
        return conn

    monkeypatch.setattr(_connection, "open_connection", small_disk)
    big = '{"text": "' + "x" * 500_000 + '"}'
    result = gigq("submit", "tests.jobs:echo", "--params-json", big)
    assert_user_error(result, 74, "disk is full")
    monkeypatch.setattr(_connection, "open_connection", opener)  # the fault is gone
    result = gigq("--json", "list")
    assert result.exit_code == 0 and kept in result.stdout
    assert result.stdout.count('"id"') == 1


def test_74_io_error(gigq: Run, tmp_path: Path) -> None:
    # The database's folder is a file: the open fails in the operating system.
    (tmp_path / "a-file").write_text("")
    assert_user_error(
        gigq("submit", "tests.jobs:noop", db=str(tmp_path / "a-file" / "q.db")), 74, "cannot open"
    )


def test_1_a_directory_given_as_the_database(gigq: Run, tmp_path: Path) -> None:
    folder = tmp_path / "a-folder.db"
    folder.mkdir()
    assert_user_error(gigq("list", db=str(folder)), 1, "is a directory")


def test_75_busy_past_the_deadline(gigq: Run, queue: JobQueue, db: str) -> None:
    submit(queue)
    blocker = sqlite3.connect(db, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        result = gigq("submit", "tests.jobs:noop", env={"GIGQ_BUSY_TIMEOUT": "0.2"})
        assert_user_error(result, 75, "locked")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert queue.stats()["total"] == 1


def test_75_upgrade_refused_while_a_worker_is_live(gigq: Run, queue: JobQueue) -> None:
    from gigq_core.records import WorkerInfo

    now = queue.clock.now()
    info = WorkerInfo(id="live", host="elsewhere", pid=1, started_at=now, last_heartbeat=now)
    queue.storage.register_worker(info)
    assert_user_error(gigq("upgrade"), 75, "live")


def test_77_read_only(gigq: Run, queue: JobQueue, db: str) -> None:
    job_id = submit(queue)
    read_only = f"sqlite:///{db}?read_only=1"
    assert gigq("list", db=read_only).exit_code == 0
    assert_user_error(gigq("submit", "tests.jobs:noop", db=read_only), 77, "read-only")
    assert_user_error(gigq("cancel", job_id, db=read_only), 77, "read-only")


def test_78_configuration_error(gigq: Run, queue: JobQueue, db: str) -> None:
    assert_user_error(gigq("list", env={"GIGQ_LEASE": "-1"}), 78, "lease")


def test_78_disallowed_function(gigq: Run, queue: JobQueue) -> None:
    for function in ("os:system", "builtins:eval", "subprocess:run", "pickle:loads"):
        assert_user_error(gigq("submit", function, "-p", "command=true"), 78, "not allowed")
    assert queue.stats()["total"] == 0
