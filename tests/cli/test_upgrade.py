"""`gigq upgrade`: non-additive schema migrations, refused while workers are live (exit 75)."""

from __future__ import annotations

import json
import socket
import sqlite3

import pytest

from gigq_core import JobQueue
from gigq_core.records import WorkerInfo
from gigq_sqlite import schema, storage

from .conftest import Run
from .helpers import assert_user_error, submit

#: A pretend version 2 that is not additive (it rewrites a column's content).
V2 = ("CREATE TABLE upgrade_marker (note TEXT)", "UPDATE jobs SET description = 'v2'")


@pytest.fixture
def pending_v2(monkeypatch: pytest.MonkeyPatch) -> None:
    """This GigQ knows a schema version 2 whose migration needs `gigq upgrade`."""
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, V2))
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(schema, "NON_ADDITIVE", frozenset({2}))
    monkeypatch.setattr(storage, "SCHEMA_VERSION", 2)


def user_version(db: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def register(queue: JobQueue, worker_id: str, pid: int, host: str | None = None) -> None:
    now = queue.clock.now()
    queue.storage.register_worker(
        WorkerInfo(
            id=worker_id,
            host=host or socket.gethostname(),
            pid=pid,
            started_at=now,
            last_heartbeat=now,
        )
    )


def test_up_to_date(gigq: Run, queue: JobQueue) -> None:
    result = gigq("upgrade")
    assert result.exit_code == 0, result.output
    assert "up to date (version 1)" in result.stdout
    report = json.loads(gigq("--json", "upgrade").stdout)
    assert report == {"from_version": 1, "to_version": 1, "applied": []}


def test_missing_database_is_a_user_error(gigq: Run, db: str) -> None:
    assert_user_error(gigq("upgrade"), 1, "does not exist")


def test_a_pending_non_additive_migration_refuses_to_open_until_upgraded(
    gigq: Run, queue: JobQueue, db: str, pending_v2: None
) -> None:
    job_id = submit(queue)
    queue.close()
    assert_user_error(gigq("list"), 65, "gigq upgrade")
    assert user_version(db) == 1
    result = gigq("upgrade")
    assert result.exit_code == 0, result.output
    assert "from version 1 to 2" in result.stdout
    assert user_version(db) == 2
    listed = json.loads(gigq("--json", "status", job_id).stdout)
    assert listed["description"] == "v2"


def test_refused_while_a_worker_is_live_and_nothing_applied(
    gigq: Run, queue: JobQueue, db: str, pending_v2: None
) -> None:
    register(queue, "alive-here", pid=1)  # pid 1 exists on this host
    register(queue, "dead-here", pid=2**22 + 12345)  # no such process: does not count
    queue.close()
    assert_user_error(gigq("upgrade"), 75, "alive-here")
    assert user_version(db) == 1


def test_a_dead_worker_of_this_host_does_not_block(
    gigq: Run, queue: JobQueue, db: str, pending_v2: None
) -> None:
    register(queue, "dead-here", pid=2**22 + 12345)
    queue.close()
    assert gigq("upgrade").exit_code == 0
    assert user_version(db) == 2
