"""SqliteStorage: the Storage port on one SQLite file (WAL, BEGIN IMMEDIATE for writes)."""

from __future__ import annotations

import os
import platform
import socket
import sqlite3
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

from gigq_core.errors import StorageError, UserError, WorkersLiveError
from gigq_core.records import JobRecord, Outcome, Transition, WorkerInfo
from gigq_sql.connection import Connection
from gigq_sql.insert import insert_jobs, refuse_taken_ids
from gigq_sql.options import BUSY_TIMEOUT, DURABILITY
from gigq_sql.queries import load_workers
from gigq_sql.sqlite import SQLITE
from gigq_sql.storage import PLAIN, SqlStorage, Work, Writing
from gigq_sqlite._batch import InsertBatcher
from gigq_sqlite._connection import Database, Settings, network_filesystem
from gigq_sqlite._trust import JOURNAL_SUFFIXES, folder_problem, owner, owner_name, run_problems
from gigq_sqlite._wake import WalWaiter
from gigq_sqlite.plugin import CHECKPOINT_THRESHOLD, JOURNAL_SIZE_LIMIT
from gigq_sqlite.schema import SCHEMA_VERSION, upgrade_schema

T = TypeVar("T")

#: Free pages returned to the file system per prune (8 MiB at the default page size).
VACUUM_PAGES = 2048

#: A registered worker that heartbeat within this many seconds counts as live for `upgrade`
#: (twice the default lease; a worker of this host whose process is gone never counts).
LIVE_WORKER_WINDOW = 60.0

#: Seconds wait_for_work watches closely after the WAL changed, for the commit to show.
SETTLE = 0.05


class SqliteStorage(SqlStorage):
    """Jobs in one SQLite file; safe for threads of one process and for many processes."""

    #: Capability: opening the same URL again gives an independent connection to the same
    #: database (the worker heartbeats through one of its own).
    independent_handles = True
    dialect = SQLITE

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        url: str | None = None,
        durability: str = DURABILITY.default,
        busy_timeout: float = BUSY_TIMEOUT.default,
        journal_size_limit: int = JOURNAL_SIZE_LIMIT.default,
        checkpoint_threshold: int = CHECKPOINT_THRESHOLD.default,
        create: bool = True,
        create_folders: bool = False,
        read_only: bool = False,
        upgrading: bool = False,
        allow_insecure_permissions: bool = False,
    ) -> None:
        self.path = os.fspath(path)
        self.url = url or self.path
        self._db = Database(
            Settings(
                path=self.path,
                durability=durability,
                busy_timeout=busy_timeout,
                journal_size_limit=journal_size_limit,
                checkpoint_threshold=checkpoint_threshold,
                create=create,
                create_folders=create_folders,
                read_only=read_only,
                upgrading=upgrading,
                trust_any_owner=allow_insecure_permissions,
            )
        )
        self._waiter = WalWaiter(self._db.wal_path)
        self._inserts = InsertBatcher(self._db, _insert)

    def __repr__(self) -> str:
        return f"SqliteStorage({self.url!r})"

    @property
    def created(self) -> bool:
        """Whether this storage created its database file (rather than found it)."""
        return self._db.created

    # -- transactions (see SqlStorage) -----------------------------------------------------

    def _read(self, work: Work[T], *, snapshot: bool = False) -> T:
        if snapshot:
            return self._db.read(lambda conn: work(conn, 0))
        with self._db.locked() as conn:
            return work(conn, 0)

    def _write(self, work: Work[T], how: Writing = PLAIN) -> T:
        return self._db.write(
            lambda conn: work(conn, 0), mark_wait=how.claiming, op=how.op, durable=how.durable
        )

    def _label(self, op: str) -> None:
        self._db.label(op)

    def _finished(self, conn: Connection, done: Sequence[Transition | None]) -> None:
        self._label_release(conn, done)

    def _after_commit(self, op: str) -> None:
        # Every worker sweeps periodically and finishes jobs: the places to bound the WAL,
        # since no connection checkpoints on its own (a stat() each, a checkpoint only
        # past the threshold).
        self._db.maybe_checkpoint()

    def _reclaim_space(self) -> None:
        # Return some free pages to the file system (auto_vacuum is INCREMENTAL).
        self._db.write(_reclaim_free_pages, op="vacuum")

    # -- jobs ------------------------------------------------------------------------------

    def insert(self, jobs: Sequence[JobRecord], now: datetime) -> list[str]:
        """Store new jobs atomically; see Storage.insert."""
        # Threads submitting at the same time share a transaction (see _batch).
        return self._inserts.insert(list(jobs), now)

    def finish_deferred(
        self, outcomes: Sequence[Outcome], now: datetime
    ) -> list[Transition | None]:
        """Like `finish`, but the commit does not wait for the disk: the write lock is
        held only while the rows are written, not through the fsync. The outcomes are
        durable once `sync()` returns (a capability of this adapter; see Worker)."""
        return self._finish(outcomes, now, durable=False)

    def sync(self) -> None:
        """Wait until every commit so far is durable (see `finish_deferred`)."""
        self._db.sync()

    def _label_release(self, conn: Connection, done: Sequence[Transition | None]) -> None:
        """Label a finish that released or cancelled dependents "release" (test-only crash
        points; costs nothing unless they are set)."""
        if not self._db.crash_points:
            return
        ended = [t.job.id for t in done if t is not None and t.job.status.is_final]
        if any(t is not None and t.cancelled for t in done) or (
            ended
            and conn.execute(
                "SELECT 1 FROM dependencies WHERE depends_on IN"
                " (SELECT value FROM json_each(?)) LIMIT 1",
                (SQLITE.ids(ended),),
            ).fetchone()
        ):
            self._db.label("release")

    def wait_for_work(self, timeout: float) -> bool:
        """Block up to `timeout` seconds until another commit may have made a job ready.

        Sleeps on an inotify watch of the WAL file (Linux; elsewhere short slices) and
        confirms with PRAGMA data_version (which changes when another connection commits)
        and this object's own commit count; no write, no table read.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        mark = self._db.wait_mark
        current = self._db.change_marker()
        self._db.wait_mark = current
        if mark is not None and current != mark:
            return True
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._waiter.wait(remaining):
                # The WAL is written before the commit's fsync and becomes visible only
                # after it: watch closely for a moment instead of waiting for another event.
                settle = min(deadline, time.monotonic() + SETTLE)
                while time.monotonic() < settle:
                    if self._db.change_marker() != current:
                        break
                    time.sleep(0.002)
            latest = self._db.change_marker()
            if latest != current:
                self._db.wait_mark = latest
                return True

    # -- capabilities ----------------------------------------------------------------------

    def backup(self, path: str | os.PathLike[str]) -> None:
        """Copy the database, consistently and online, to a new file at `path` (mode 0600)."""
        target = os.fspath(path)
        try:
            fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError as err:
            raise UserError(f"the backup target {target} already exists") from err
        except OSError as err:
            raise UserError(f"cannot create the backup {target}: {err.strerror}") from err
        os.close(fd)
        with self._db.locked() as conn:
            copy = sqlite3.connect(target)
            try:
                conn.backup(copy)
            finally:
                copy.close()

    def upgrade(self) -> dict[str, Any]:
        """Apply the schema migrations that do not run on open (the non-additive ones), in
        one transaction; refused with WorkersLiveError while workers are live (even when
        there is nothing to apply, so the answer never depends on the version). Returns
        `from_version`, `to_version` and `applied` (the versions migrated to)."""

        def work(conn: sqlite3.Connection) -> dict[str, Any]:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            live = _live_workers(load_workers(conn, SQLITE, None), time.time())
            if live:
                shown = ", ".join(f"{w.id} (pid {w.pid} on {w.host})" for w in live[:5])
                raise WorkersLiveError(
                    f"{len(live)} worker(s) are live on {self.path}: {shown}; stop them "
                    "(SIGTERM), then run `gigq upgrade` again"
                )
            applied = upgrade_schema(conn, self.path)
            return {"from_version": version, "to_version": SCHEMA_VERSION, "applied": applied}

        return self._db.write(work)

    def permission_problem(self) -> str | None:
        """Why running jobs from this database is unsafe, or None: the database and its
        journal files must belong to the worker's user and be writable by nobody else, in a
        folder no other user can write."""
        problems = run_problems(self.path)
        if not problems:
            return None
        return "; ".join(problems) + " (or set allow_insecure_permissions)"

    def diagnose(self) -> list[dict[str, Any]]:
        """Checks for `gigq doctor`: dicts with `check`, `level` ("ok", "warn" or "fail"),
        `ok`, `detail` and `fix` (one line, empty when there is nothing to do)."""
        now = time.time()
        with self._db.locked() as conn:
            integrity = ", ".join(r[0] for r in conn.execute("PRAGMA quick_check(5)"))
            journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
            synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            busy_ms = conn.execute("PRAGMA busy_timeout").fetchone()[0]
            limit = conn.execute("PRAGMA journal_size_limit").fetchone()[0]
            auto_vacuum = conn.execute("PRAGMA auto_vacuum").fetchone()[0]
            stuck = conn.execute(
                "SELECT count(*) FROM jobs WHERE status = 'running' AND lease_expires_at < ?",
                (now,),
            ).fetchone()[0]
            orphans = conn.execute(
                "SELECT count(*) FROM dependencies d WHERE NOT EXISTS "
                "(SELECT 1 FROM jobs j WHERE j.id = d.job_id)"
            ).fetchone()[0]
        try:
            wal = os.path.getsize(self._db.wal_path)
        except OSError:
            wal = 0
        threshold = self._db.settings.checkpoint_threshold
        pinned = False
        readers = "no checkpoint due"
        if wal > threshold and not self._db.settings.read_only:
            # Past the threshold a checkpoint is due: run it as any GigQ process would (it
            # holds the write lock; a passive one could meet SQLite's WAL-reset bug). What
            # it cannot copy is pinned by a reader that holds an old snapshot.
            try:
                busy, frames, copied = self._db.checkpoint()
            except StorageError as err:
                readers = f"the checkpoint failed: {err}"
            else:
                pinned = bool(busy) and 0 <= copied < frames
                readers = (
                    f"{copied} of {frames} WAL frames checkpointed; a reader holds an old snapshot"
                    if pinned
                    else "checkpointed"
                    if not busy
                    else "the checkpoint was busy; a later one will get through"
                )
            try:
                wal = os.path.getsize(self._db.wal_path)
            except OSError:
                wal = 0
        sync_name = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(synchronous, "?")
        network = network_filesystem(self.path)
        return [
            _check(
                "python",
                "ok",
                f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}",
            ),
            _sqlite_version_check(),
            _check(
                "integrity",
                "ok" if integrity == "ok" else "fail",
                f"quick_check: {integrity}",
                ""
                if integrity == "ok"
                else "stop the workers, restore the latest `gigq backup`, or copy what is readable "
                "with `sqlite3 DB .recover`",
            ),
            _check(
                "schema version",
                "ok" if version == SCHEMA_VERSION else "fail",
                f"{version} (this GigQ knows {SCHEMA_VERSION})",
                "" if version == SCHEMA_VERSION else "upgrade GigQ, or run `gigq upgrade`",
            ),
            _check(
                "journal mode",
                "ok" if journal == "wal" else "fail",
                str(journal),
                "" if journal == "wal" else "open the database with GigQ once to switch to WAL",
            ),
            _check(
                "synchronous",
                "ok" if synchronous == 2 else "warn",
                sync_name
                + (
                    " (durability=normal: the last commits may be lost on power loss)"
                    if synchronous == 1
                    else ""
                ),
                ""
                if synchronous == 2
                else "set durability=full unless you chose speed over power-loss safety",
            ),
            _check(
                "busy timeout",
                "ok",
                f"{self._db.settings.busy_timeout:g} s (waits retried in {busy_ms} ms slices)",
            ),
            _check(
                "journal size limit",
                "ok" if limit >= 0 else "warn",
                f"{limit} bytes",
            ),
            _check(
                "auto vacuum",
                "ok" if auto_vacuum == 2 else "warn",
                {0: "NONE", 1: "FULL", 2: "INCREMENTAL"}.get(auto_vacuum, str(auto_vacuum)),
                ""
                if auto_vacuum == 2
                else "databases made by other tools cannot give space "
                "back after pruning without a full VACUUM",
            ),
            _check(
                "wal size",
                "ok" if wal <= threshold else "warn",
                f"{wal:,} bytes"
                + (f", past the {threshold:,}-byte threshold" if wal > threshold else ""),
                ""
                if wal <= threshold
                else "a worker's sweep or a submit checkpoints it; if it stays big, "
                "find the process holding a long read (see 'wal readers')",
            ),
            _check(
                "wal readers",
                "warn" if pinned else "ok",
                readers,
                "close long-running read transactions (an open cursor, a `sqlite3` shell session)"
                if pinned
                else "",
            ),
            _check(
                "file system",
                "fail" if network else "ok",
                network or "local",
                "move the database to a local disk: SQLite's locks are unreliable on network "
                "file systems"
                if network
                else "",
            ),
            *self._trust_checks(),
            _check(
                "stuck jobs",
                "ok" if stuck == 0 else "warn",
                f"{stuck} running job(s) past their lease",
                "" if stuck == 0 else "start a worker: its sweep returns them to pending",
            ),
            _check(
                "dependency rows",
                "ok" if orphans == 0 else "warn",
                f"{orphans} pointing at no job",
                ""
                if orphans == 0
                else "harmless leftovers; `gigq clear` removes them with their jobs",
            ),
        ]

    def _trust_checks(self) -> list[dict[str, Any]]:
        """Doctor's checks of who owns and may write the database, its journal files and
        its folder (what a worker refuses to run jobs from)."""
        me = os.geteuid()
        real = os.path.realpath(self.path)  # a symlink's target
        checks = []
        for label, file in (
            ("file permissions", real),
            *((f"{suffix[1:]} file permissions", real + suffix) for suffix in JOURNAL_SUFFIXES),
        ):
            try:
                info = os.lstat(file)
            except FileNotFoundError:
                continue
            mode = info.st_mode & 0o777
            fixes = []
            if info.st_uid != me:
                fixes.append(f"chown {owner_name(me)} {file}")
            if mode & 0o077:
                fixes.append(f"chmod 600 {file}")
            level = "fail" if info.st_uid != me or mode & 0o022 else "ok" if not fixes else "warn"
            checks.append(
                _check(
                    label,
                    level,
                    f"{file} {oct(mode)}, owned by {owner(info.st_uid)}",
                    "; ".join(fixes),
                )
            )
        folder = os.path.dirname(real)
        info = os.stat(folder)
        problem = folder_problem(real, me)
        checks.append(
            _check(
                "directory permissions",
                "fail" if problem else "ok",
                f"{folder} {oct(info.st_mode & 0o7777)}, owned by {owner(info.st_uid)}",
                ""
                if not problem
                else f"chmod go-w {folder}"
                if "chmod go-w" in problem
                else "move the database to a folder you own",
            )
        )
        return checks

    def export(self) -> Iterator[dict[str, Any]]:
        """The queue as a stream of JSON-able items (gigq_core.transfer), from one snapshot."""
        from gigq_sqlite._export import export_items

        return export_items(self.path, self._db.settings.busy_timeout)

    def close(self) -> None:
        """Close the connection; the object may not be used afterwards."""
        self._waiter.close()
        self._db.close()


def _insert(conn: sqlite3.Connection, jobs: Sequence[JobRecord], now: datetime) -> list[str]:
    """insert_jobs, naming the taken id when the UNIQUE constraint refuses one."""
    try:
        return insert_jobs(conn, SQLITE, jobs, now)
    except sqlite3.IntegrityError:
        refuse_taken_ids(conn, SQLITE, [job.id for job in jobs])
        raise


def _reclaim_free_pages(conn: sqlite3.Connection) -> None:
    """Give up to VACUUM_PAGES free pages back to the file system. Each step of
    `incremental_vacuum` frees one page, and Python's sqlite3 steps a statement that returns
    no columns only once: one execution per page (a single one would free a single page)."""
    (free,) = conn.execute("PRAGMA freelist_count").fetchone()
    for _ in range(min(int(free), VACUUM_PAGES)):
        conn.execute("PRAGMA incremental_vacuum")


def _live_workers(workers: Sequence[WorkerInfo], now: float) -> list[WorkerInfo]:
    """Registered workers that heartbeat recently, less those of this host that are gone."""
    host = socket.gethostname()
    live = []
    for worker in workers:
        if worker.stopped_at is not None:
            continue
        if now - worker.last_heartbeat.timestamp() > LIVE_WORKER_WINDOW:
            continue
        if worker.host == host:
            try:
                os.kill(worker.pid, 0)
            except ProcessLookupError:
                continue
            except PermissionError:
                pass  # alive, another user's
        live.append(worker)
    return live


#: The first SQLite release without the WAL-reset bug (3.7.0 to 3.51.2 have it).
WAL_RESET_FIXED = (3, 51, 3)


def _sqlite_version_check() -> dict[str, Any]:
    """Doctor's check of the SQLite library: on versions with the WAL-reset bug, what GigQ
    does about it (only checkpoints that hold the write lock), not a warning the user
    could act on only by rebuilding Python."""
    version = sqlite3.sqlite_version
    if tuple(sqlite3.sqlite_version_info) >= WAL_RESET_FIXED:
        return _check("sqlite version", "ok", f"SQLite {version}")
    return _check(
        "sqlite version",
        "ok",
        f"SQLite {version}: its WAL-reset bug (3.7.0-3.51.2) is mitigated, GigQ runs only "
        "TRUNCATE checkpoints",
    )


def _check(name: str, level: str, detail: str, fix: str = "") -> dict[str, Any]:
    return {"check": name, "level": level, "ok": level != "fail", "detail": detail, "fix": fix}


__all__ = ["SqliteStorage"]
