"""Storage faults (docs/guarantees.md): disk full, read-only, corrupt header,
corrupt page, truncated WAL. Each gives its documented error and exit code (D10: 74, 77,
65), GigQ never modifies the file (bytes compared where that applies), and every committed
job is still there once the fault is gone. (tests/contract/test_sqlite_specific.py has the
adapter-level basics; tests/cli/test_exit_codes.py the CLI's codes.)"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pluggy
import pytest
from click.testing import CliRunner

from gigq import JobQueue
from gigq_cli import create_cli
from gigq_core import Job, Worker, make_plugin_manager
from gigq_core.errors import (
    CorruptDatabaseError,
    DiskFullError,
    NotADatabaseError,
    ReadOnlyError,
)
from gigq_core.records import Outcome
from gigq_sqlite import _connection

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pm() -> pluggy.PluginManager:
    """Built-in plugins only."""
    return make_plugin_manager(load_entrypoints=False)


def make_queue(db: Path, pm: pluggy.PluginManager, count: int) -> list[str]:
    """A database with `count` committed jobs (closed, so its WAL is checkpointed away)."""
    with JobQueue(str(db), plugin_manager=pm) as queue:
        return queue.submit_many(
            [Job(f"j{n}", "tests.jobs:echo", params={"n": n}) for n in range(count)]
        )


def job_ids(db: Path) -> list[str]:
    """The ids in the database, in submit order, read with plain sqlite3."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [job_id for (job_id,) in conn.execute("SELECT id FROM jobs ORDER BY seq")]
    finally:
        conn.close()


def cli(pm: pluggy.PluginManager, target: str, *args: str) -> tuple[int, str]:
    """Run `gigq --db TARGET ARGS`; (exit code, stderr) with no traceback allowed."""
    result = CliRunner().invoke(create_cli(pm), ["--db", target, *args])
    assert "Traceback" not in result.stderr, result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result
    return result.exit_code, result.stderr


def summary(name: str, started: float, **counts: object) -> None:
    """The one-line summary."""
    fields = " ".join(f"{key}={value}" for key, value in counts.items())
    print(f"[storage-fault {name}] {fields} time={time.monotonic() - started:.1f}s")


@contextlib.contextmanager
def full_disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every connection opened meanwhile sees a disk that is full at the database's size."""
    opener = _connection.open_connection

    def small_disk(uri: str, busy_timeout: float) -> sqlite3.Connection:
        conn = opener(uri, busy_timeout)
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {pages}")
        return conn

    monkeypatch.setattr(_connection, "open_connection", small_disk)
    try:
        yield
    finally:
        monkeypatch.setattr(_connection, "open_connection", opener)


def test_disk_full(
    tmp_path: Path, pm: pluggy.PluginManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = time.monotonic()
    db = tmp_path / "jobs.db"
    kept = make_queue(db, pm, 20)
    with JobQueue(str(db), plugin_manager=pm) as queue:
        [running] = queue.storage.claim("w", 1, queue.clock.now(), 30.0)
    refused = 0
    with full_disk(monkeypatch):
        with JobQueue(str(db), plugin_manager=pm) as queue:
            big = Job("big", "tests.jobs:echo", params={"text": "x" * 800_000})
            with pytest.raises(DiskFullError) as caught:
                queue.submit(big)
            assert caught.value.exit_code == 74
            many = [Job(f"b{n}", "tests.jobs:echo", params={"t": "y" * 9000}) for n in range(50)]
            with pytest.raises(DiskFullError):
                queue.submit_many(many)
            refused += 51
            assert queue.stats()["total"] == len(kept)
            # Finishing with a result too big for the disk fails; the job stays running
            # under its lease (a worker would have it rescued), its token intact.
            done = Outcome(
                job_id=running.id,
                token=running.token or "",
                status="completed",
                result='"' + "r" * 800_000 + '"',
            )
            with pytest.raises(DiskFullError):
                queue.storage.finish([done], queue.clock.now())
            assert queue.get_status(running.id)["status"] == "running"
        code, stderr = cli(pm, str(db), "submit", "tests.jobs:echo", "-p", "t=" + "z" * 900_000)
        assert code == 74 and "disk is full" in stderr, stderr
        refused += 1
    # The fault is gone: everything committed is there, and the database takes writes.
    with JobQueue(str(db), plugin_manager=pm) as queue:
        assert queue.storage.finish([done], queue.clock.now())[0] is not None
        queue.submit(big)
        assert queue.stats()["total"] == len(kept) + 1
    assert job_ids(db)[: len(kept)] == kept
    assert quick_check(db) == "ok"
    summary("disk-full", started, committed=len(kept), refused=refused, code=code)


def test_read_only(tmp_path: Path, pm: pluggy.PluginManager) -> None:
    started = time.monotonic()
    db = tmp_path / "jobs.db"
    kept = make_queue(db, pm, 10)
    before = db.read_bytes()
    target = f"sqlite:///{db}?read_only=1"
    with JobQueue(target, plugin_manager=pm) as queue:
        assert queue.stats()["total"] == 10
        assert queue.get_status(kept[0])["status"] == "pending"
        for write in (
            lambda: queue.submit(Job("n", "tests.jobs:noop")),
            lambda: queue.cancel(kept[0]),
            lambda: queue.clear_completed(),
            lambda: queue.pause_queue("q"),
        ):
            with pytest.raises(ReadOnlyError) as caught:
                write()
            assert caught.value.exit_code == 77
    codes = {
        args[0]: cli(pm, target, *args)[0]
        for args in (["list"], ["submit", "tests.jobs:noop"], ["cancel", kept[1]], ["clear"])
    }
    assert codes == {"list": 0, "submit": 77, "cancel": 77, "clear": 77}, codes
    assert db.read_bytes() == before, "a read-only open modified the database file"
    assert job_ids(db) == kept
    summary("read-only", started, jobs=len(kept), refused=4 + 4, codes=sorted(set(codes.values())))


def test_a_worker_on_a_read_only_database_exits_77(
    tmp_path: Path, pm: pluggy.PluginManager
) -> None:
    db = tmp_path / "jobs.db"
    make_queue(db, pm, 1)
    assert cli(pm, f"sqlite:///{db}?read_only=1", "worker", "--once")[0] == 77


def test_corrupt_header(tmp_path: Path, pm: pluggy.PluginManager) -> None:
    started = time.monotonic()
    db = tmp_path / "jobs.db"
    kept = make_queue(db, pm, 10)
    good = db.read_bytes()
    bad = b"Not SQLite at all" + good[17:]
    db.write_bytes(bad)
    for open_it in (
        lambda: JobQueue(str(db), plugin_manager=pm),
        lambda: Worker(str(db), plugin_manager=pm),
    ):
        with pytest.raises(NotADatabaseError) as caught:
            open_it()
        assert caught.value.exit_code == 65
    codes = {cli(pm, str(db), *args)[0] for args in (["list"], ["submit", "tests.jobs:noop"])}
    assert codes == {65}
    assert db.read_bytes() == bad, "GigQ modified a corrupt file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jobs.db"]
    db.write_bytes(good)  # the fault is gone (restored from a backup)
    assert job_ids(db) == kept
    summary("corrupt-header", started, jobs=len(kept), codes=sorted(codes))


def test_corrupt_page(tmp_path: Path, pm: pluggy.PluginManager) -> None:
    started = time.monotonic()
    db = tmp_path / "jobs.db"
    kept = make_queue(db, pm, 300)
    conn = sqlite3.connect(db)
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'jobs'").fetchone()
    conn.close()
    good = db.read_bytes()
    offset = (root - 1) * page_size
    bad = good[:offset] + bytes([0xA5]) * page_size + good[offset + page_size :]
    db.write_bytes(bad)
    with pytest.raises(CorruptDatabaseError) as caught, JobQueue(str(db), plugin_manager=pm) as q:
        q.list_jobs()
    assert caught.value.exit_code == 65
    codes = {cli(pm, str(db), *args)[0] for args in (["list"], ["stats"], ["worker", "--once"])}
    assert codes == {65}, codes
    assert db.read_bytes() == bad, "GigQ modified a corrupt file"
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.write_bytes(good)
    assert job_ids(db) == kept
    assert quick_check(db) == "ok"
    summary("corrupt-page", started, jobs=len(kept), page=root, codes=sorted(codes))


WRITER = """
import os, sys
from gigq_core import Job, JobQueue, make_plugin_manager
queue = JobQueue(sys.argv[1], plugin_manager=make_plugin_manager(load_entrypoints=False))
for n in range(int(sys.argv[2])):
    queue.submit(Job(f"j{n}", "tests.jobs:echo", params={"n": n, "pad": "p" * 3000}))
os._exit(0)  # a crash: the WAL keeps every commit, nothing checkpointed it
"""


def test_truncated_wal_keeps_a_prefix_of_the_commits(
    tmp_path: Path, pm: pluggy.PluginManager
) -> None:
    """SQLite silently keeps a truncated WAL's valid prefix (documented as what GigQ cannot
    promise): what survives must be exactly the first commits, with no torn job."""
    started = time.monotonic()
    db, commits = tmp_path / "jobs.db", 60
    make_queue(db, pm, 0)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-c", WRITER, str(db), str(commits)], env=env, check=True, timeout=60
    )
    wal = Path(f"{db}-wal")
    size = wal.stat().st_size
    assert size > 0
    Path(f"{db}-shm").unlink()  # as after a reboot: the WAL index is rebuilt from the file
    with open(wal, "r+b") as handle:  # no SQLite connection is open in this process
        handle.truncate(size * 2 // 3 + 123)
    with JobQueue(str(db), plugin_manager=pm) as queue:
        found = queue.list_jobs(limit=1000, order="oldest")
    names = [job["name"] for job in found]
    assert names == [f"j{n}" for n in range(len(names))], "not a prefix of the commits"
    assert 0 < len(names) < commits
    assert all(job["params"]["n"] == n for n, job in enumerate(found))
    assert quick_check(db) == "ok"
    summary(
        "truncated-wal", started, committed=commits, kept=len(names), lost_tail=commits - len(names)
    )


def quick_check(db: Path) -> str:
    """PRAGMA quick_check through a plain connection."""
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("PRAGMA quick_check").fetchone()[0])
    finally:
        conn.close()
