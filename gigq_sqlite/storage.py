"""SqliteStorage: the Storage port on one SQLite file (WAL, BEGIN IMMEDIATE for writes)."""

from __future__ import annotations

import os
import platform
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from gigq_core.errors import UserError, WorkersLiveError
from gigq_core.records import (
    Execution,
    HeartbeatReply,
    JobFilter,
    JobRecord,
    JobStatus,
    Outcome,
    Transition,
    WorkerInfo,
    WorkflowInfo,
)
from gigq_sqlite import _lifecycle
from gigq_sqlite._batch import InsertBatcher
from gigq_sqlite._connection import Database, Settings, network_filesystem
from gigq_sqlite._insert import insert_jobs
from gigq_sqlite._queries import (
    load_workers,
    load_workflows,
    prefix_upper_bound,
    prune_jobs,
    vacuum_some,
    where_clause,
)
from gigq_sqlite._requeue import requeue_jobs
from gigq_sqlite._rows import (
    EXECUTION_SELECT,
    JOB_SELECT,
    WORKER_SELECT,
    as_text,
    due_time,
    execution_from_row,
    id_list,
    jobs_from_rows,
    load_jobs,
    to_ts,
    worker_values,
)
from gigq_sqlite._trust import JOURNAL_SUFFIXES, folder_problem, owner, run_problems
from gigq_sqlite._wake import WalWaiter
from gigq_sqlite.schema import SCHEMA_VERSION, upgrade_schema

_ORDERS = {"newest": "seq DESC", "oldest": "seq", "priority": "priority DESC, seq"}


#: A registered worker that heartbeat within this many seconds counts as live for `upgrade`
#: (twice the default lease; a worker of this host whose process is gone never counts).
LIVE_WORKER_WINDOW = 60.0

#: Seconds wait_for_work watches closely after the WAL changed, for the commit to show.
SETTLE = 0.05


class SqliteStorage:
    """Jobs in one SQLite file; safe for threads of one process and for many processes."""

    #: Capability: opening the same URL again gives an independent connection to the same
    #: database (the worker heartbeats through one of its own).
    independent_handles = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        url: str | None = None,
        durability: str = "full",
        busy_timeout: float = 30.0,
        journal_size_limit: int = 64 * 1024 * 1024,
        checkpoint_threshold: int = 32 * 1024 * 1024,
        create: bool = True,
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
                read_only=read_only,
                upgrading=upgrading,
                trust_any_owner=allow_insecure_permissions,
            )
        )
        self._waiter = WalWaiter(self._db.wal_path)
        self._inserts = InsertBatcher(self._db, insert_jobs)

    def __repr__(self) -> str:
        return f"SqliteStorage({self.url!r})"

    # -- jobs: writes ----------------------------------------------------------------------

    def insert(self, jobs: Sequence[JobRecord], now: datetime) -> list[str]:
        """Store new jobs atomically; see Storage.insert."""
        # Threads submitting at the same time share a transaction (see _batch).
        return self._inserts.insert(list(jobs), now)

    def claim(
        self,
        worker_id: str,
        limit: int,
        now: datetime,
        lease: float,
        queues: Sequence[str] | None = None,
    ) -> list[JobRecord]:
        """Claim up to `limit` ready jobs; see Storage.claim."""
        if limit <= 0 or (queues is not None and not queues):
            return []
        return self._db.write(
            lambda conn: _lifecycle.claim_jobs(conn, worker_id, limit, now, lease, queues),
            mark_wait=True,
            op="claim",
            # A claim lost to a power cut only makes its job run again (at-least-once).
            durable=False,
        )

    def finish(self, outcomes: Sequence[Outcome], now: datetime) -> list[Transition | None]:
        """Apply attempt outcomes in one transaction; see Storage.finish."""
        return self._finish(outcomes, now, durable=True)

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

    def _finish(
        self, outcomes: Sequence[Outcome], now: datetime, *, durable: bool
    ) -> list[Transition | None]:
        if not outcomes:
            return []
        outcomes = list(outcomes)

        def work(conn: sqlite3.Connection) -> list[Transition | None]:
            done = _lifecycle.finish_outcomes(conn, outcomes, now)
            self._label_release(conn, done)
            return done

        result = self._db.write(work, op="finish", durable=durable)
        self._db.maybe_checkpoint(min_interval=1.0)
        return result

    def finish_and_claim(
        self,
        outcomes: Sequence[Outcome],
        now: datetime,
        worker_id: str,
        limit: int,
        lease: float,
        queues: Sequence[str] | None = None,
    ) -> tuple[list[Transition | None], list[JobRecord]]:
        """finish() then claim() in one transaction; see Storage.finish_and_claim."""
        outcomes = list(outcomes)
        claiming = limit > 0 and (queues is None or bool(queues))

        def work(conn: sqlite3.Connection) -> tuple[list[Transition | None], list[JobRecord]]:
            done = _lifecycle.finish_outcomes(conn, outcomes, now) if outcomes else []
            self._label_release(conn, done)
            claimed = (
                _lifecycle.claim_jobs(conn, worker_id, limit, now, lease, queues)
                if claiming
                else []
            )
            if claimed:
                self._db.label("claim")
            return done, claimed

        result = self._db.write(work, mark_wait=claiming, op="finish" if outcomes else None)
        self._db.maybe_checkpoint(min_interval=1.0)
        return result

    def heartbeat(
        self, worker_id: str, held: Mapping[str, str], now: datetime, lease: float
    ) -> HeartbeatReply:
        """Renew the leases of held jobs; see Storage.heartbeat."""
        held = dict(held)
        return self._db.write(
            lambda conn: _lifecycle.renew_leases(conn, worker_id, held, now, lease),
            # A crash point at a heartbeat means one that renews a lease.
            op="heartbeat" if held else None,
            durable=False,
        )

    def rescue(self, now: datetime, worker_ids: Sequence[str] = ()) -> list[Transition]:
        """Return jobs of dead workers to pending; see Storage.rescue."""
        dead = list(worker_ids)

        def work(conn: sqlite3.Connection) -> list[Transition]:
            rescued = _lifecycle.rescue_jobs(conn, now, dead)
            if rescued:
                self._db.label("rescue")
            return rescued

        result = self._db.write(work)
        # Every worker sweeps periodically, which makes this the place to bound the WAL.
        self._db.maybe_checkpoint()
        return result

    def cancel(self, job_ids: Sequence[str], now: datetime, reason: str) -> list[Transition]:
        """Cancel jobs, with cascade; see Storage.cancel."""
        ids = list(job_ids)
        return self._db.write(
            lambda conn: _lifecycle.cancel_jobs(conn, ids, now, reason), op="cancel"
        )

    def requeue(self, job_ids: Sequence[str], now: datetime) -> list[Transition]:
        """Requeue finished-badly jobs, reviving their dependents; see Storage.requeue."""
        ids = list(job_ids)
        return self._db.write(lambda conn: requeue_jobs(conn, ids, now), op="requeue")

    def prune(self, before: datetime, statuses: Sequence[str]) -> int:
        """Delete old jobs in `statuses` that no unfinished job needs; see Storage.prune."""
        wanted = sorted({JobStatus(status).value for status in statuses})
        if not wanted:
            return 0
        deleted = self._db.write(lambda conn: prune_jobs(conn, to_ts(before), wanted))
        if deleted:
            self._db.write(vacuum_some)
        return deleted

    def _label_release(self, conn: sqlite3.Connection, done: Sequence[Transition | None]) -> None:
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
                (id_list(ended),),
            ).fetchone()
        ):
            self._db.label("release")

    # -- jobs: reads -----------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        """The job with that id, or None."""
        return self.get_many([job_id]).get(job_id)

    def get_many(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        """The jobs that exist among `job_ids`, by id."""
        ids = list(job_ids)
        if not ids:
            return {}
        return self._db.read(lambda conn: load_jobs(conn, ids))

    def results(self, job_ids: Sequence[str], max_bytes: int) -> tuple[int, dict[str, str]]:
        """The results of the jobs among `job_ids` if together they fit in `max_bytes`;
        see Storage.results."""
        if not job_ids:
            return 0, {}
        ids = id_list(job_ids)

        def work(conn: sqlite3.Connection) -> tuple[int, dict[str, str]]:
            # Sized in SQL first, so results over the limit never reach Python.
            [total] = conn.execute(
                "SELECT coalesce(sum(length(CAST(result AS BLOB))), 0) FROM jobs"
                " WHERE id IN (SELECT value FROM json_each(?))",
                (ids,),
            ).fetchone()
            if total > max_bytes:
                return total, {}
            rows = conn.execute(
                "SELECT id, result FROM jobs WHERE id IN (SELECT value FROM json_each(?))"
                " AND result IS NOT NULL",
                (ids,),
            ).fetchall()
            return total, dict(rows)

        return self._db.read(work)

    def executions(self, job_id: str) -> list[Execution]:
        """The job's execution records, oldest first."""

        def work(conn: sqlite3.Connection) -> list[Execution]:
            rows = conn.execute(
                f"SELECT {EXECUTION_SELECT} FROM job_executions WHERE job_id = ?"
                " ORDER BY started_at, rowid",
                (job_id,),
            ).fetchall()
            found = [execution_from_row(row) for row in rows]
            running = _lifecycle.running_executions(conn, [job_id], found)
            return found + list(running.values())

        return self._db.read(work)

    def list_jobs(
        self, where: JobFilter, limit: int = 100, offset: int = 0, order: str = "newest"
    ) -> list[JobRecord]:
        """Jobs matching `where`, in `order` ("newest", "oldest" or "priority")."""
        if order not in _ORDERS:
            raise ValueError(f"unknown order {order!r}; use newest, oldest or priority")
        clause, params = where_clause(where)
        sql = (
            f"SELECT {JOB_SELECT} FROM jobs WHERE {clause} ORDER BY {_ORDERS[order]}"
            " LIMIT ? OFFSET ?"
        )
        args = (*params, max(limit, 0), max(offset, 0))
        return self._db.read(lambda conn: jobs_from_rows(conn, conn.execute(sql, args).fetchall()))

    def count(self, where: JobFilter) -> dict[str, int]:
        """Count of matching jobs per status value."""
        clause, params = where_clause(where)
        with self._db.locked() as conn:
            rows = conn.execute(
                f"SELECT status, count(*) FROM jobs WHERE {clause} GROUP BY status", params
            ).fetchall()
        counts: dict[str, int] = {}
        for status, total in rows:  # (a status changed by hand may not be text)
            counts[as_text(status)] = counts.get(as_text(status), 0) + total
        return counts

    def queue_counts(self) -> dict[str, dict[str, int]]:
        """Count of jobs per queue name and status value, queues sorted by name."""
        with self._db.locked() as conn:
            rows = conn.execute(
                "SELECT queue, status, count(*) FROM jobs GROUP BY queue, status ORDER BY queue"
            ).fetchall()
        counts: dict[str, dict[str, int]] = {}
        for queue, status, total in rows:  # (names changed by hand may not be text)
            per_status = counts.setdefault(as_text(queue), {})
            per_status[as_text(status)] = per_status.get(as_text(status), 0) + total
        return counts

    def find_ids(self, prefix: str, limit: int = 2) -> list[str]:
        """Up to `limit` ids starting with `prefix`, sorted (a range scan of the id index)."""
        if limit <= 0:
            return []
        upper = prefix_upper_bound(prefix)
        with self._db.locked() as conn:
            if upper is None:
                rows = conn.execute(
                    "SELECT id FROM jobs WHERE id >= ? ORDER BY id LIMIT ?", (prefix, limit)
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT id FROM jobs WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
                    (prefix, upper, limit),
                ).fetchall()
        return [job_id for (job_id,) in rows if job_id.startswith(prefix)]

    def next_due(self, now: datetime, queues: Sequence[str] | None = None) -> datetime | None:
        """The earliest run_at of a pending job whose dependencies all completed."""
        if queues is not None and not queues:
            return None
        # The first row of the jobs_due index that passes the filters; never a scan of jobs.
        sql = (
            "SELECT run_at FROM jobs INDEXED BY jobs_due WHERE status = 'pending' AND blocked = 0"
            " AND queue NOT IN (SELECT queue FROM paused_queues){queues}"
            " ORDER BY run_at LIMIT 1"
        )
        params: tuple[Any, ...] = ()
        if queues is None:
            sql = sql.format(queues="")
        else:
            sql = sql.format(queues=" AND queue IN (SELECT value FROM json_each(?))")
            params = (id_list(queues),)
        with self._db.locked() as conn:
            row = conn.execute(sql, params).fetchone()
        return None if row is None else due_time(row[0], now)

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

    def list_workflows(self, limit: int = 100) -> list[WorkflowInfo]:
        """Workflows with their job counts, newest first."""
        return self._db.read(lambda conn: load_workflows(conn, max(limit, 0)))

    # -- workers, queues, key-value --------------------------------------------------------

    def register_worker(self, info: WorkerInfo) -> None:
        """Record a worker, replacing a record with the same id."""
        values = worker_values(info)
        self._db.write(
            lambda conn: conn.execute(
                f"INSERT OR REPLACE INTO workers ({WORKER_SELECT}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
        )

    def deregister_worker(self, worker_id: str, now: datetime) -> None:
        """Mark the worker stopped at `now`."""
        self._db.write(
            lambda conn: conn.execute(
                "UPDATE workers SET stopped_at = ? WHERE id = ?", (to_ts(now), worker_id)
            )
        )

    def list_workers(self, since: datetime | None = None) -> list[WorkerInfo]:
        """Workers still registered, or stopped at or after `since`; with their jobs."""
        return self._db.read(lambda conn: load_workers(conn, since))

    def set_queue_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume a queue."""
        sql = (
            "INSERT OR IGNORE INTO paused_queues (queue) VALUES (?)"
            if paused
            else "DELETE FROM paused_queues WHERE queue = ?"
        )
        self._db.write(lambda conn: conn.execute(sql, (queue,)))

    def paused_queues(self) -> frozenset[str]:
        """Names of the paused queues."""
        with self._db.locked() as conn:
            rows = conn.execute("SELECT queue FROM paused_queues").fetchall()
        return frozenset(as_text(queue) for (queue,) in rows)

    def kv_get(self, namespace: str, key: str) -> str | None:
        """A value of the key-value store, or None."""
        with self._db.locked() as conn:
            row = conn.execute(
                "SELECT value FROM kv WHERE namespace = ? AND key = ?", (namespace, key)
            ).fetchone()
        return None if row is None else str(row[0])

    def kv_set(self, namespace: str, key: str, value: str | None) -> None:
        """Set a value (None deletes it)."""
        params: tuple[str, ...] = (namespace, key)
        if value is None:
            sql = "DELETE FROM kv WHERE namespace = ? AND key = ?"
        else:
            sql = "INSERT OR REPLACE INTO kv (namespace, key, value) VALUES (?, ?, ?)"
            params = (namespace, key, value)
        self._db.write(lambda conn: conn.execute(sql, params))

    def kv_items(self, namespace: str) -> dict[str, str]:
        """All keys and values of a namespace, sorted by key."""
        with self._db.locked() as conn:
            rows = conn.execute(
                "SELECT key, value FROM kv WHERE namespace = ? ORDER BY key", (namespace,)
            ).fetchall()
        return {key: value for key, value in rows}

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
            live = _live_workers(load_workers(conn, None), time.time())
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
            # A passive checkpoint copies what it can without waiting; frames it cannot
            # copy are pinned by a reader that holds an old snapshot.
            _, wal_frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        try:
            wal = os.path.getsize(self._db.wal_path)
        except OSError:
            wal = 0
        old_sqlite = sqlite3.sqlite_version_info < (3, 51, 3)
        sync_name = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(synchronous, "?")
        threshold = self._db.settings.checkpoint_threshold
        network = network_filesystem(self.path)
        pinned = wal_frames > 0 and copied < wal_frames
        return [
            _check(
                "python",
                "ok",
                f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}",
            ),
            _check(
                "sqlite version",
                "warn" if old_sqlite else "ok",
                f"SQLite {sqlite3.sqlite_version}"
                + (
                    " is in 3.7.0-3.51.2, which has a WAL-reset bug under concurrent "
                    "multi-process use"
                    if old_sqlite
                    else ""
                ),
                "use a Python built with SQLite 3.51.3 or newer (e.g. pysqlite3-binary, or a "
                "newer python.org build)"
                if old_sqlite
                else "",
            ),
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
                else "a worker's sweep checkpoints it; if it stays big, "
                "find the process holding a long read (see 'wal readers')",
            ),
            _check(
                "wal readers",
                "warn" if pinned else "ok",
                f"{copied} of {wal_frames} WAL frames checkpointed"
                + ("; a reader holds an old snapshot" if pinned else ""),
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
                fixes.append(f"chown {owner(me).split(' ')[0]} {file}")
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

    def import_(
        self, items: Iterable[Mapping[str, Any]], now: datetime | None = None
    ) -> dict[str, int]:
        """Store an export exactly, in one transaction, into this empty queue; counts per
        kind. Refused (TransferError) when it holds any job; running jobs arrive as a rescue
        at `now` (default: the current time) leaves them. See gigq_sqlite._export."""
        from gigq_sqlite._export import import_items

        return import_items(self._db, self.url, items, now)

    def close(self) -> None:
        """Close the connection; the object may not be used afterwards."""
        self._waiter.close()
        self._db.close()


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


def _check(name: str, level: str, detail: str, fix: str = "") -> dict[str, Any]:
    return {"check": name, "level": level, "ok": level != "fail", "detail": detail, "fix": fix}


__all__ = ["SqliteStorage"]
