"""SQLite's WAL-reset bug (3.7.0-3.51.2): a checkpoint that does not hold the write lock can
record the wrong copy progress when another connection's commit resets the log, and a
later checkpoint then skips committed frames. GigQ turns automatic (PASSIVE) checkpoints
off on every connection and runs only TRUNCATE checkpoints, which hold the write lock for
their whole run; these tests check both, and that the WAL stays bounded without the
automatic checkpoints."""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pluggy
import pytest
from click.testing import CliRunner

from gigq_cli import create_cli
from gigq_core import Job, JobQueue, Worker, make_plugin_manager
from gigq_core.testing import FakeClock
from gigq_sqlite import SqliteStorage, _connection
from tests.contract._factory import job_record as make_job

_CHECKPOINT = re.compile(r"wal_checkpoint\s*(\(\s*(\w*)\s*\))?", re.I)
_SMALL = 64 * 1024


class Traced:
    """Every connection gigq_sqlite opens from now on, and every checkpoint statement."""

    def __init__(self) -> None:
        self.connections: list[tuple[str, sqlite3.Connection]] = []
        #: (uri, wal_autocheckpoint) as each connection came out of open_connection.
        self.opened: list[tuple[str, int]] = []
        #: (uri, statement) of every statement naming wal_checkpoint or wal_autocheckpoint.
        self.statements: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def wrap(
        self, opener: Callable[[str, float], sqlite3.Connection]
    ) -> Callable[[str, float], sqlite3.Connection]:
        def traced(uri: str, busy_timeout: float) -> sqlite3.Connection:
            conn = opener(uri, busy_timeout)
            (pages,) = conn.execute("PRAGMA wal_autocheckpoint").fetchone()

            def trace(sql: str) -> None:
                if "checkpoint" in sql.lower():
                    with self._lock:
                        self.statements.append((uri, sql))

            conn.set_trace_callback(trace)
            with self._lock:
                self.connections.append((uri, conn))
                self.opened.append((uri, pages))
            return conn

        return traced

    def checkpoint_modes(self) -> list[str]:
        """The mode of every checkpoint run ("PASSIVE" when none is named)."""
        modes = []
        for _, sql in self.statements:
            match = _CHECKPOINT.search(sql)
            if match and "autocheckpoint" not in sql.lower():
                modes.append((match.group(2) or "PASSIVE").upper())
        return modes

    def autocheckpoint_settings(self) -> list[str]:
        """Statements that set wal_autocheckpoint to anything but 0."""
        return [
            sql
            for _, sql in self.statements
            if re.search(r"wal_autocheckpoint\s*=\s*(?!0\b)", sql, re.I)
            or re.search(r"wal_autocheckpoint\s*\(\s*(?!0\b)", sql, re.I)
        ]


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> Traced:
    tracer = Traced()
    monkeypatch.setattr(_connection, "open_connection", tracer.wrap(_connection.open_connection))
    return tracer


@pytest.fixture
def pm() -> pluggy.PluginManager:
    return make_plugin_manager(load_entrypoints=False)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
def storage(db_path: Path) -> Iterator[SqliteStorage]:
    opened = SqliteStorage(db_path)
    try:
        yield opened
    finally:
        opened.close()


def _autocheckpoint(storage: object) -> int:
    assert isinstance(storage, SqliteStorage)
    with storage._db.locked() as conn:  # adapter internals: the live connection
        (pages,) = conn.execute("PRAGMA wal_autocheckpoint").fetchone()
    return int(pages)


def test_every_connection_gigq_opens_has_automatic_checkpoints_off(
    traced: Traced, pm: pluggy.PluginManager, tmp_path: Path
) -> None:
    db = str(tmp_path / "jobs.db")
    with JobQueue(db, plugin_manager=pm) as queue:
        assert _autocheckpoint(queue.storage) == 0  # the queue's connection
        queue.submit(Job("add", "tests.jobs:add", params={"a": 1, "b": 2}))
        worker = Worker(db, executor="inline", plugin_manager=pm)
        try:
            assert _autocheckpoint(worker.storage) == 0  # the worker's own connection
            handle = worker._second_storage()  # its extra handle (heartbeats, outcomes)
            try:
                assert handle is not worker.storage
                assert _autocheckpoint(handle) == 0
            finally:
                handle.close()
            worker.start(burst=True)  # every handle a running worker opens
        finally:
            worker.close()
        assert queue.stats()["completed"] == 1
    cli = create_cli(pm)
    for args in (["list"], ["doctor"], ["migrate", "--to", str(tmp_path / "moved.db")]):
        result = CliRunner().invoke(cli, ["--db", db, *args])
        assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["--db", db, "backup", str(tmp_path / "copy.db")])
    assert result.exit_code == 0, result.output

    assert len(traced.opened) >= 6
    assert any("mode=ro" in uri for uri, _ in traced.opened)  # the export's reader
    assert [(uri, pages) for uri, pages in traced.opened if pages != 0] == []
    assert traced.autocheckpoint_settings() == []  # and nothing turns them back on


def test_a_representative_workload_runs_only_truncate_checkpoints(
    traced: Traced, pm: pluggy.PluginManager, tmp_path: Path, clock: FakeClock
) -> None:
    db = str(tmp_path / "jobs.db")
    with JobQueue(db, plugin_manager=pm, checkpoint_threshold=_SMALL) as queue:
        for n in range(300):  # submits past the threshold, several times over
            queue.submit(Job("add", "tests.jobs:add", params={"a": n, "b": 1}))
        worker = Worker(db, executor="inline", plugin_manager=pm, checkpoint_threshold=_SMALL)
        try:
            worker.start(burst=True)  # claims, finishes, sweeps
        finally:
            worker.close()
        assert queue.stats()["completed"] == 300
        storage = queue.storage
        assert isinstance(storage, SqliteStorage)
        storage.insert([make_job(clock.now()) for _ in range(200)], clock.now())
        storage.rescue(clock.now())
        list(storage.export())
        storage.backup(tmp_path / "copy.db")
        # Doctor checkpoints a WAL past the threshold itself.
        writer = SqliteStorage(db)  # the default threshold: its insert leaves the WAL be
        try:
            writer.insert([make_job(clock.now()) for _ in range(200)], clock.now())
        finally:
            writer.close()
        assert os.path.getsize(f"{db}-wal") > _SMALL
        levels = {c["check"]: c["level"] for c in storage.diagnose()}

    modes = traced.checkpoint_modes()
    assert modes, "the workload should have checkpointed"
    assert set(modes) <= {"TRUNCATE", "RESTART"}, modes
    assert levels["wal size"] == "ok"  # doctor's own checkpoint got through


def test_a_checkpoint_waits_for_the_write_lock_instead_of_running_without_it(
    db_path: Path, clock: FakeClock
) -> None:
    # SQLite runs a TRUNCATE checkpoint that cannot get the write lock as a PASSIVE one:
    # the checkpoint must wait for a writer of the moment rather than give up on the lock.
    storage = SqliteStorage(db_path, checkpoint_threshold=1024)
    writer = SqliteStorage(db_path)  # the default threshold: its insert leaves the WAL be
    blocker = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    try:
        writer.insert([make_job(clock.now()) for _ in range(50)], clock.now())
        assert os.path.getsize(f"{db_path}-wal") > 1024
        blocker.execute("BEGIN IMMEDIATE")  # a writer holds the lock for 0.3 s
        release = threading.Timer(0.3, lambda: blocker.execute("COMMIT"))
        release.start()
        try:
            assert storage._db.maybe_checkpoint()  # adapter internals: the check alone
        finally:
            release.join()
        assert os.path.getsize(f"{db_path}-wal") == 0  # waited, then copied and truncated
    finally:
        blocker.close()
        writer.close()
        storage.close()


@pytest.mark.parametrize(
    ("version", "level", "says"),
    [
        ((3, 40, 1), "ok", "mitigated"),
        ((3, 51, 2), "ok", "mitigated"),
        ((3, 51, 3), "ok", ""),
        ((3, 53, 0), "ok", ""),
    ],
)
def test_doctor_says_what_gigq_does_about_the_wal_reset_bug(
    monkeypatch: pytest.MonkeyPatch,
    storage: SqliteStorage,
    version: tuple[int, int, int],
    level: str,
    says: str,
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", version)
    monkeypatch.setattr(sqlite3, "sqlite_version", ".".join(map(str, version)))
    [check] = [c for c in storage.diagnose() if c["check"] == "sqlite version"]
    assert check["level"] == level
    assert check["fix"] == ""
    assert check["detail"].startswith("SQLite " + ".".join(map(str, version)))
    if says:
        assert says in check["detail"]
    else:
        assert check["detail"] == "SQLite " + ".".join(map(str, version))


# -- the WAL stays bounded without automatic checkpoints --------------------------------

_SUBMITTER = """
import sys
from gigq_core import Job, JobQueue, make_plugin_manager
queue = JobQueue(sys.argv[1], plugin_manager=make_plugin_manager(load_entrypoints=False))
for n in range(int(sys.argv[2])):
    queue.submit(Job("add", "tests.jobs:add", params={"a": n, "b": 1}))
queue.close()
"""

_BURST_THRESHOLD = 1024 * 1024
#: What the WAL may grow past the threshold before a checkpoint gets through: the gap
#: between the default threshold (32 MiB) and the 64 MiB bound (docs/guarantees.md D12).
_MARGIN = 32 * 1024 * 1024


@pytest.fixture
def burst_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = dict(os.environ, GIGQ_CHECKPOINT_THRESHOLD=str(_BURST_THRESHOLD))
    env["PYTHONPATH"] = os.pathsep.join([str(Path.cwd()), env.get("PYTHONPATH", "")])
    yield env


@pytest.mark.process
@pytest.mark.timeout(300)
@pytest.mark.parametrize("with_worker", [False, True], ids=["submitters-only", "with-worker"])
def test_the_wal_stays_bounded_through_a_burst_of_submits(
    tmp_path: Path, burst_env: dict[str, str], pm: pluggy.PluginManager, with_worker: bool
) -> None:
    db = str(tmp_path / "jobs.db")
    JobQueue(db, plugin_manager=pm).close()
    submitters = [
        subprocess.Popen([sys.executable, "-c", _SUBMITTER, db, "10000"], env=burst_env)
        for _ in range(2)
    ]
    worker = (
        subprocess.Popen(
            [sys.executable, "-m", "gigq_cli", "--db", db, "worker", "--executor", "inline"],
            env=burst_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if with_worker
        else None
    )
    largest = 0
    try:
        while any(p.poll() is None for p in submitters):
            with contextlib.suppress(FileNotFoundError):
                largest = max(largest, os.path.getsize(f"{db}-wal"))
            time.sleep(0.002)
    finally:
        for process in submitters:
            if process.poll() is None:
                process.kill()
            process.wait()
        if worker is not None:
            worker.terminate()
            worker.communicate(timeout=60)
    assert [p.returncode for p in submitters] == [0, 0]
    assert largest > _BURST_THRESHOLD  # the burst did push it past the threshold
    assert largest < _BURST_THRESHOLD + _MARGIN, f"the WAL reached {largest:,} bytes"
    with JobQueue(db, plugin_manager=pm) as queue:
        assert queue.stats()["total"] == 20000
