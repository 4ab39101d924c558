"""Tests of what only the SQLite adapter promises: file modes, PRAGMAs, refusing foreign
files without touching them, fork safety, concurrent claiming, plans and error mapping."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gigq_core.errors import (
    BusyError,
    ConfigError,
    DatabaseNotFoundError,
    DiskFullError,
    NotADatabaseError,
    ReadOnlyError,
    SchemaVersionError,
    StorageError,
    StorageIOError,
    UnknownDependencyError,
)
from gigq_core.plugins import make_plugin_manager
from gigq_core.queue import JobQueue
from gigq_core.records import JobFilter, JobRecord, JobStatus, Outcome
from gigq_core.testing import FakeClock
from gigq_sql.sqlite import CLAIM_ANY_QUEUE, CLAIM_QUEUES
from gigq_sqlite import SqliteStorage, _connection
from gigq_sqlite.plugin import gigq_storage, path_from_url
from gigq_sqlite.schema import APPLICATION_ID, SCHEMA_VERSION


def make_job(now: datetime, **fields: Any) -> JobRecord:
    """A valid job record submitted at `now`."""
    job_id = fields.pop("id", None) or str(uuid.uuid4())
    defaults: dict[str, Any] = {
        "name": f"job-{job_id[:8]}",
        "function": "tests.jobs:noop",
        "params": "{}",
        "run_at": now,
        "created_at": now,
        "updated_at": now,
    }
    return JobRecord(id=job_id, **{**defaults, **fields})


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at 2030-01-01 UTC."""
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the database of a test lives."""
    return tmp_path / "jobs.db"


@pytest.fixture
def storage(db_path: Path) -> Iterator[SqliteStorage]:
    """A fresh SqliteStorage on `db_path`."""
    opened = SqliteStorage(db_path)
    try:
        yield opened
    finally:
        opened.close()


def pragma(path: Path, name: str) -> Any:
    """A PRAGMA's value read through a separate plain connection."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


# -- the file ------------------------------------------------------------------------------


def test_new_database_and_its_wal_files_are_private(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "new" / "deeper" / "jobs.db"
    storage = SqliteStorage(path, create_folders=True)
    try:
        storage.insert([make_job(clock.now())], clock.now())
        assert path.stat().st_mode & 0o777 == 0o600
        for suffix in ("-wal", "-shm"):
            assert Path(f"{path}{suffix}").stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700
        assert (tmp_path / "new" / "deeper").stat().st_mode & 0o777 == 0o700
    finally:
        storage.close()


def test_wal_full_sync_and_incremental_vacuum_are_in_effect(
    storage: SqliteStorage, db_path: Path
) -> None:
    checks = {item["check"]: item for item in storage.diagnose()}
    assert checks["journal mode"]["detail"] == "wal"
    assert checks["synchronous"]["detail"] == "FULL"
    assert pragma(db_path, "journal_mode") == "wal"
    assert pragma(db_path, "auto_vacuum") == 2  # INCREMENTAL
    assert pragma(db_path, "application_id") == APPLICATION_ID
    assert pragma(db_path, "user_version") == SCHEMA_VERSION


def test_durability_normal_selects_synchronous_normal(db_path: Path) -> None:
    storage = gigq_storage(url=f"sqlite:///{db_path}", options={"durability": "normal"})
    assert storage is not None
    try:
        checks = {item["check"]: item for item in storage.diagnose()}
        assert checks["synchronous"]["detail"].startswith("NORMAL")
        assert checks["synchronous"]["level"] == "warn"
    finally:
        storage.close()


def test_an_empty_file_is_a_new_database(db_path: Path, clock: FakeClock) -> None:
    db_path.touch()
    storage = SqliteStorage(db_path)
    try:
        [job_id] = storage.insert([make_job(clock.now())], clock.now())
        assert storage.get(job_id) is not None
    finally:
        storage.close()


def test_a_missing_file_with_create_false_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "jobs.db"
    with pytest.raises(DatabaseNotFoundError, match="absent"):
        gigq_storage(url=str(path), options={"create": "false"})
    assert not (tmp_path / "absent").exists()


# -- refusing files that are not ours, without touching them -------------------------------


def assert_refused_unchanged(path: Path, error: type[Exception], match: str) -> None:
    before = path.read_bytes()
    with pytest.raises(error, match=match):
        SqliteStorage(path)
    assert path.read_bytes() == before


def test_a_garbage_file_is_not_a_database_and_stays_unchanged(db_path: Path) -> None:
    db_path.write_bytes(b"this is not SQLite\n" * 500)
    assert_refused_unchanged(db_path, NotADatabaseError, "not a GigQ database")


def test_a_foreign_sqlite_database_is_refused_and_stays_unchanged(db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('keep me')")
    conn.commit()
    conn.close()
    assert_refused_unchanged(db_path, NotADatabaseError, "not a GigQ database")


def test_a_newer_schema_is_refused_and_stays_unchanged(db_path: Path) -> None:
    SqliteStorage(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    assert_refused_unchanged(db_path, SchemaVersionError, "newer than this GigQ knows")


# -- processes and threads -----------------------------------------------------------------


def test_a_forked_child_reopens_its_connection(
    storage: SqliteStorage, db_path: Path, clock: FakeClock
) -> None:
    [parent_job] = storage.insert([make_job(clock.now(), name="parent")], clock.now())
    parent_connection = storage._db._conn  # adapter internals: this test is about them
    child_job = str(uuid.uuid4())
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only, never return into pytest
        code = 1
        try:
            storage.insert([make_job(clock.now(), id=child_job, name="child")], clock.now())
            seen = storage.get(parent_job) is not None
            reopened = storage._db._conn is not parent_connection
            code = 0 if seen and reopened else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 30
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child did not finish within 30 s")
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's connection still works and sees the child's commit.
    assert storage._db._conn is parent_connection
    assert storage.get(child_job) is not None
    assert pragma(db_path, "quick_check") == "ok"


def test_two_storages_claiming_from_threads_never_share_a_job(
    db_path: Path, clock: FakeClock
) -> None:
    storages = [SqliteStorage(db_path), SqliteStorage(db_path)]
    try:
        jobs = [make_job(clock.now(), priority=n % 3) for n in range(300)]
        storages[0].insert(jobs, clock.now())
        claimed: list[str] = []
        lock = threading.Lock()

        def claim_all(storage: SqliteStorage, worker: str) -> None:
            while True:
                got = storage.claim(worker, 3, clock.now(), 30.0)
                if not got:
                    return
                with lock:
                    claimed.extend(job.id for job in got)

        threads = [
            threading.Thread(target=claim_all, args=(storages[n % 2], f"w{n}")) for n in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
        assert len(claimed) == len(set(claimed)) == len(jobs)
        counts = storages[1].count(JobFilter())
        assert counts == {"running": len(jobs)}
    finally:
        for storage in storages:
            storage.close()


def test_wait_for_work_wakes_on_another_connections_commit(db_path: Path, clock: FakeClock) -> None:
    waiter, writer = SqliteStorage(db_path), SqliteStorage(db_path)
    try:
        assert waiter.claim("w", 1, clock.now(), 30.0) == []
        assert waiter.wait_for_work(0.05) is False
        timer = threading.Timer(0.1, lambda: writer.insert([make_job(clock.now())], clock.now()))
        timer.start()
        started = time.monotonic()
        assert waiter.wait_for_work(20.0) is True
        assert time.monotonic() - started < 10
        timer.join()
    finally:
        waiter.close()
        writer.close()


# -- plans ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sql", [CLAIM_ANY_QUEUE, CLAIM_QUEUES], ids=["any-queue", "queues"])
def test_the_claim_walks_the_ready_index(storage: SqliteStorage, db_path: Path, sql: str) -> None:
    conn = sqlite3.connect(db_path)
    try:
        params = ["w", 0, 0, 0, 0, *(['["default"]'] if sql is CLAIM_QUEUES else []), 5]
        plan = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    finally:
        conn.close()
    assert "USING INDEX jobs_ready" in plan
    assert "TEMP B-TREE" not in plan
    assert "SCAN jobs |" not in f"{plan} |"  # no walk of the table itself


def test_requeue_never_breaks_the_unique_key_index(
    storage: SqliteStorage, clock: FakeClock
) -> None:
    # The partial UNIQUE index would turn a second active holder into an IntegrityError.
    first = make_job(clock.now(), unique_key="k")
    storage.insert([first], clock.now())
    storage.cancel([first.id], clock.now(), "stop")
    second = make_job(clock.now(), unique_key="k")
    assert storage.insert([second], clock.now()) == [second.id]
    assert storage.requeue([first.id], clock.now()) == []
    stored = storage.get(first.id)
    assert stored is not None and stored.status is JobStatus.CANCELLED


# -- executions ----------------------------------------------------------------------------


def test_a_claim_writes_no_execution_row_until_the_attempt_ends(
    storage: SqliteStorage, db_path: Path, clock: FakeClock
) -> None:
    [job_id] = storage.insert([make_job(clock.now())], clock.now())
    [job] = storage.claim("w", 1, clock.now(), 30.0)
    assert [e.status for e in storage.executions(job_id)] == ["running"]
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM job_executions").fetchone()[0] == 0
    storage.finish([Outcome(job_id=job_id, token=job.token, status="completed")], clock.now())
    [execution] = storage.executions(job_id)
    assert (execution.status, execution.token, execution.worker_id) == ("completed", job.token, "w")


def test_a_running_row_written_at_claim_by_an_older_version_is_replaced(
    storage: SqliteStorage, db_path: Path, clock: FakeClock
) -> None:
    # GigQ 0.6.0.dev wrote a "running" execution row at claim time; a job claimed by such a
    # worker and ended (or rescued) by this one must keep one execution, not two.
    [job_id] = storage.insert([make_job(clock.now())], clock.now())
    [job] = storage.claim("old", 1, clock.now(), 30.0)
    conn = sqlite3.connect(db_path)
    try:
        with conn:
            conn.execute(
                "INSERT INTO job_executions (id, job_id, attempt, worker_id, token, status,"
                " started_at) VALUES (?, ?, 1, 'old', ?, 'running', ?)",
                (str(uuid.uuid4()), job_id, job.token, clock.now().timestamp()),
            )
    finally:
        conn.close()
    [running] = storage.executions(job_id)
    assert (running.status, running.token) == ("running", job.token)
    storage.finish([Outcome(job_id=job_id, token=job.token, status="completed")], clock.now())
    assert [(e.status, e.token) for e in storage.executions(job_id)] == [("completed", job.token)]


def test_a_deferred_finish_is_committed_at_once_and_durable_after_sync(
    storage: SqliteStorage, db_path: Path, clock: FakeClock
) -> None:
    [job_id] = storage.insert([make_job(clock.now())], clock.now())
    [job] = storage.claim("w", 1, clock.now(), 30.0)
    outcome = Outcome(job_id=job_id, token=job.token, status="completed", result="1")
    [transition] = storage.finish_deferred([outcome], clock.now())
    assert transition is not None and transition.job.status is JobStatus.COMPLETED
    other = SqliteStorage(db_path)  # another connection sees the commit before the sync
    try:
        stored = other.get(job_id)
        assert stored is not None and stored.status is JobStatus.COMPLETED
    finally:
        other.close()
    storage.sync()
    # A stale token stays fenced on this path too.
    assert storage.finish_deferred([outcome], clock.now()) == [None]


def test_sync_follows_a_write_ahead_log_made_again(db_path: Path, clock: FakeClock) -> None:
    first = SqliteStorage(db_path)
    first.insert([make_job(clock.now())], clock.now())
    first.sync()
    first.close()  # the last connection: SQLite checkpoints and removes the WAL
    second = SqliteStorage(db_path)
    try:
        second.sync()  # no WAL yet, or a new one: nothing to fail on
        second.insert([make_job(clock.now())], clock.now())
        second.sync()
        assert second.count(JobFilter()) == {"pending": 2}
    finally:
        second.close()


def test_a_submit_syncs_the_log_of_the_real_file_behind_a_symlink(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite opens a symlinked database's target and keeps its WAL beside it; a submit
    # (committed without a sync, then synced) must sync that file, also after a chdir.
    real = tmp_path / "data" / "jobs.db"
    link = tmp_path / "jobs.db"
    link.symlink_to(real)  # to a file (and folder) not made yet: the first open makes them
    synced: list[int] = []
    storage = SqliteStorage(str(link), durability="full", create_folders=True)
    try:
        monkeypatch.chdir(real.parent)
        monkeypatch.setattr(_connection, "_fdatasync", synced.append)
        storage.insert([make_job(clock.now())], clock.now())
        wal = os.stat(str(real) + "-wal")
        assert [os.fstat(fd).st_ino for fd in synced] == [wal.st_ino]
    finally:
        storage.close()
    assert link.is_symlink() and os.stat(real).st_mode & 0o777 == 0o600


def test_a_submit_waits_for_the_disk_inside_the_lock_only_with_the_database_to_itself(
    db_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Among other writers a submit commits, releases the lock, then syncs the log; when no
    # other connection has committed since its last submit it commits at synchronous=FULL
    # (SQLite syncs inside the commit). Either way the jobs are durable when it returns.
    synced: list[int] = []
    monkeypatch.setattr(_connection, "_fdatasync", synced.append)
    storage = SqliteStorage(str(db_path), durability="full")
    other = SqliteStorage(str(db_path), durability="full")
    statements: list[str] = []
    try:
        storage.insert([make_job(clock.now())], clock.now())  # not known to be alone yet
        assert len(synced) == 1
        with storage._db.locked() as conn:
            conn.set_trace_callback(statements.append)
        storage.insert([make_job(clock.now())], clock.now())
        assert len(synced) == 1  # no separate sync: the commit itself was synchronous=FULL
        assert statements.index("PRAGMA synchronous = FULL") < statements.index("COMMIT")
        other.insert([make_job(clock.now())], clock.now())  # another writer appears
        synced.clear()
        statements.clear()
        storage.insert([make_job(clock.now())], clock.now())
        assert len(synced) == 1
        assert statements.index("PRAGMA synchronous = NORMAL") < statements.index("COMMIT")
        assert other.count(JobFilter()) == {"pending": 4}
    finally:
        other.close()
        storage.close()


def test_an_io_error_at_a_lone_submits_commit_says_the_jobs_may_be_stored(
    db_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A synchronous=FULL commit whose sync the disk fails has written the rows to the log:
    # the caller must hear "check before submitting again", not "nothing was stored". An
    # I/O error before the rows were written is a plain failure.
    storage = SqliteStorage(str(db_path), durability="full")
    try:
        storage.insert([make_job(clock.now())], clock.now())  # from now on alone
        real = storage._db.write

        def commit_fails(work: Any, **kwargs: Any) -> Any:
            real(work, **kwargs)
            raise StorageIOError(f"I/O error on database {db_path} (disk I/O error)")

        monkeypatch.setattr(storage._db, "write", commit_fails)
        with pytest.raises(StorageError, match="did not confirm them"):
            storage.insert([make_job(clock.now())], clock.now())

        def begin_fails(work: Any, **kwargs: Any) -> Any:
            raise StorageIOError(f"I/O error on database {db_path} (disk I/O error)")

        monkeypatch.setattr(storage._db, "write", begin_fails)
        with pytest.raises(StorageIOError) as raised:
            storage.insert([make_job(clock.now())], clock.now())
        assert "did not confirm" not in str(raised.value)
    finally:
        monkeypatch.undo()
        storage.close()


def test_concurrent_submits_share_commits_but_keep_their_own_outcome(
    storage: SqliteStorage, db_path: Path, clock: FakeClock
) -> None:
    # Threads that submit at once go into one transaction, each in its own savepoint: a
    # request that fails leaves the others stored, and every caller gets its own answer.
    threads, rounds = 8, 25
    results: dict[tuple[int, int], Any] = {}
    start = threading.Barrier(threads)

    def submit(n: int) -> None:
        start.wait(10)
        for r in range(rounds):
            if r % 5 == 0:  # an unknown dependency: refused, alone
                job = make_job(clock.now(), dependencies=(str(uuid.uuid4()),))
            elif r % 5 == 1:  # everyone submits the same key: one job holds it
                job = make_job(clock.now(), unique_key=f"round-{r}")
            else:
                job = make_job(clock.now())
            try:
                results[(n, r)] = (job, storage.insert([job], clock.now()))
            except Exception as err:
                results[(n, r)] = (job, err)

    workers = [threading.Thread(target=submit, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert len(results) == threads * rounds
    holders: dict[str, set[str]] = {}
    for (_, r), (job, outcome) in results.items():
        if r % 5 == 0:
            assert isinstance(outcome, UnknownDependencyError), outcome
            assert storage.get(job.id) is None
        elif r % 5 == 1:
            [holder] = outcome
            holders.setdefault(job.unique_key or "", set()).add(holder)
        else:
            assert outcome == [job.id]
            stored = storage.get(job.id)
            assert stored is not None and stored.status is JobStatus.PENDING
    assert all(len(ids) == 1 for ids in holders.values())  # one holder per key
    expected = threads * rounds * 3 // 5 + len(holders)
    assert storage.count(JobFilter()) == {"pending": expected}


# -- errors at the edge --------------------------------------------------------------------


def test_read_only_reads_and_refuses_writes(
    storage: SqliteStorage, db_path: Path, clock: FakeClock
) -> None:
    [job_id] = storage.insert([make_job(clock.now())], clock.now())
    reader = gigq_storage(url=str(db_path), options={"read_only": True})
    assert reader is not None
    try:
        assert reader.get(job_id) is not None
        with pytest.raises(ReadOnlyError):
            reader.insert([make_job(clock.now())], clock.now())
    finally:
        reader.close()


def test_a_held_write_lock_becomes_busy_error_after_the_timeout(
    db_path: Path, clock: FakeClock
) -> None:
    storage = SqliteStorage(db_path, busy_timeout=0.2)
    blocker = sqlite3.connect(db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(BusyError):
            storage.insert([make_job(clock.now())], clock.now())
        assert time.monotonic() - started < 10
        blocker.execute("ROLLBACK")
        storage.insert([make_job(clock.now())], clock.now())  # usable once the lock is gone
    finally:
        blocker.close()
        storage.close()


def test_a_full_disk_is_disk_full_error_and_loses_nothing(
    storage: SqliteStorage, clock: FakeClock
) -> None:
    [kept] = storage.insert([make_job(clock.now())], clock.now())
    with storage._db.locked() as conn:  # adapter internals: simulate a full disk
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {pages}")
    big = make_job(clock.now(), params='"' + "x" * 2_000_000 + '"')
    with pytest.raises(DiskFullError):
        storage.insert([big], clock.now())
    assert storage.get(big.id) is None
    assert storage.get(kept) is not None


# -- maintenance ---------------------------------------------------------------------------


def test_rescue_truncates_a_wal_past_the_threshold(db_path: Path, clock: FakeClock) -> None:
    storage = SqliteStorage(db_path, checkpoint_threshold=1024)
    writer = SqliteStorage(db_path)  # the default threshold: its insert leaves the WAL be
    try:
        writer.insert([make_job(clock.now()) for _ in range(50)], clock.now())
        assert os.path.getsize(f"{db_path}-wal") > 1024
        storage.rescue(clock.now())
        assert os.path.getsize(f"{db_path}-wal") == 0
    finally:
        writer.close()
        storage.close()


def test_a_submit_truncates_a_wal_past_the_threshold(db_path: Path, clock: FakeClock) -> None:
    storage = SqliteStorage(db_path, checkpoint_threshold=1024)
    try:
        storage.insert([make_job(clock.now()) for _ in range(50)], clock.now())
        assert os.path.getsize(f"{db_path}-wal") == 0
    finally:
        storage.close()


def test_a_pinned_reader_holds_writers_up_briefly_and_then_the_truncate_backs_off(
    db_path: Path, clock: FakeClock
) -> None:
    storage = SqliteStorage(db_path, checkpoint_threshold=1024)
    storage.insert([make_job(clock.now())], clock.now())
    reader = sqlite3.connect(db_path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM jobs").fetchone()  # holds this snapshot
        writer = SqliteStorage(db_path)
        try:
            writer.insert([make_job(clock.now()) for _ in range(50)], clock.now())
            # The checkpoint holds the write lock (SQLite's WAL-reset bug needs one that
            # does not) while it waits for the reader: about a second at most, which a
            # writer with the default timeout sits out.
            check = threading.Thread(target=storage.rescue, args=(clock.now(),))
            started = time.monotonic()
            check.start()
            time.sleep(0.05)
            writer.insert([make_job(clock.now())], clock.now())
            check.join(10)
            assert time.monotonic() - started < 5
            assert os.path.getsize(f"{db_path}-wal") > 1024  # left for a later check
            # The next checks back off: they leave the write lock alone, so a writer with
            # a short timeout gets through while they run.
            other = sqlite3.connect(db_path, isolation_level=None, timeout=0.05)
            try:
                for _ in range(5):
                    storage.rescue(clock.now())
                    other.execute("BEGIN IMMEDIATE")
                    other.execute("COMMIT")
            finally:
                other.close()
        finally:
            writer.close()
        reader.execute("COMMIT")
        deadline = time.monotonic() + 10
        while os.path.getsize(f"{db_path}-wal") and time.monotonic() < deadline:
            storage.rescue(clock.now())  # the reader let go: copied and truncated
            time.sleep(0.05)
        assert os.path.getsize(f"{db_path}-wal") == 0
    finally:
        reader.close()
        storage.close()


def test_backup_copies_into_a_private_gigq_database(
    storage: SqliteStorage, tmp_path: Path, clock: FakeClock
) -> None:
    [job_id] = storage.insert([make_job(clock.now())], clock.now())
    target = tmp_path / "copy.db"
    storage.backup(target)
    assert target.stat().st_mode & 0o777 == 0o600
    copy = SqliteStorage(target, create=False)
    try:
        assert copy.get(job_id) is not None
    finally:
        copy.close()


def test_prune_removes_execution_and_dependency_rows(
    storage: SqliteStorage, db_path: Path, clock: FakeClock
) -> None:
    parent = make_job(clock.now())
    child = make_job(clock.now(), dependencies=(parent.id,))
    storage.insert([parent, child], clock.now())
    for _ in range(2):
        [job] = storage.claim("w", 1, clock.now(), 30.0)
        done = Outcome(job_id=job.id, token=job.token or "", status="completed")
        storage.finish([done], clock.now())
    clock.advance(10)
    assert storage.prune(clock.now(), [JobStatus.COMPLETED.value]) == 2
    conn = sqlite3.connect(db_path)
    try:
        for table in ("jobs", "job_executions", "dependencies"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0
    finally:
        conn.close()


# -- the plugin ----------------------------------------------------------------------------


def test_the_plugin_answers_paths_and_sqlite_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert path_from_url("jobs.db") == "jobs.db"
    assert path_from_url("sqlite:///rel/jobs.db?durability=normal") == "rel/jobs.db"
    assert path_from_url("sqlite:////abs/jobs.db") == "/abs/jobs.db"
    assert path_from_url("memory://x") is None
    assert gigq_storage(url="postgresql://host/db", options={}) is None
    opened = gigq_storage(
        url="sqlite:///rel/jobs.db?x=1", options={"concurrency": 4, "create_folders": True}
    )
    assert opened is not None
    opened.close()
    assert (tmp_path / "rel" / "jobs.db").exists()


@pytest.mark.parametrize(
    "options",
    [{"durability": "fast"}, {"busy_timeout": "soon"}, {"create": "maybe"}],
    ids=["durability", "busy_timeout", "create"],
)
def test_bad_options_are_config_errors(db_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        gigq_storage(url=str(db_path), options=options)
    assert not db_path.exists()


@pytest.mark.parametrize("source", ["environment", "url", "pyproject", "keyword"])
def test_the_chain_configures_the_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [name for name in os.environ if name.startswith("GIGQ_")]:
        monkeypatch.delenv(name)
    target, keywords = f"sqlite:///{tmp_path / 'jobs.db'}", {}
    if source == "environment":
        monkeypatch.setenv("GIGQ_DURABILITY", "normal")
        monkeypatch.setenv("GIGQ_BUSY_TIMEOUT", "5")
    elif source == "url":
        target += "?durability=normal&busy_timeout=5"
    elif source == "pyproject":
        (tmp_path / "pyproject.toml").write_text(
            '[tool.gigq]\ndurability = "normal"\nbusy_timeout = 5\n'
        )
    else:
        keywords = {"durability": "normal", "busy_timeout": 5}

    pm = make_plugin_manager(load_entrypoints=False)
    with JobQueue(target, plugin_manager=pm, **keywords) as queue:
        assert isinstance(queue.storage, SqliteStorage)
        checks = {item["check"]: item for item in queue.storage.diagnose()}
        assert checks["synchronous"]["detail"].startswith("NORMAL")
        assert queue.storage._db.settings.busy_timeout == 5
        assert queue.storage._db.settings.journal_size_limit == 64 * 1024 * 1024
