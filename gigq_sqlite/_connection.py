"""One SQLite connection per process, shared by threads under a lock, with retrying
transactions and fork safety."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar
from urllib.parse import quote

import attrs

from gigq_core.errors import (
    BusyError,
    DatabaseNotFoundError,
    GigQError,
    PermissionDeniedError,
    StorageError,
    StorageIOError,
)
from gigq_sql.crash import CRASH_ENV, crash_at, crash_points_from
from gigq_sqlite._errors import is_busy, translate
from gigq_sqlite._trust import check_journals, check_link, check_new_file
from gigq_sqlite.schema import check_sqlite_version, ensure_schema

T = TypeVar("T")

#: Milliseconds SQLite itself waits for a lock before _transaction retries (see _connect).
_LOCK_SLICE_MS = 5

logger = logging.getLogger("gigq.sqlite")

#: File system types (as /proc/self/mounts names them) that are reached over a network.
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "fuse.sshfs"}
)

# Connections left behind by fork(): the child must never use them, and must not close them
# either (closing would release POSIX locks its own new connection holds). Keeping them
# referenced until exit is the only safe thing to do with them.
_ABANDONED: list[sqlite3.Connection] = []

# Live databases, so that fork() can wait until none is inside a transaction: then the
# child inherits no half-held SQLite lock. A WeakSet keeps this from pinning any database.
_LIVE: weakref.WeakSet[Database] = weakref.WeakSet()
_FORK_HOOK_LOCK = threading.Lock()
_fork_hook_registered = False

#: Crash-point labels whose transactions change pages but no rows (`total_changes` misses
#: them): a crash point there fires at every commit.
_PAGE_ONLY_OPERATIONS = frozenset({"vacuum"})
#: Seconds a checkpoint waits for the write lock, and then for readers to leave the log.
#: SQLite runs a TRUNCATE checkpoint that cannot get the write lock in time as a PASSIVE
#: one, which is what the WAL-reset bug of SQLite 3.7.0-3.51.2 needs (see
#: `maybe_checkpoint`): long enough that GigQ's own short transactions never keep it out,
#: short enough that a reader holding an old snapshot keeps writers waiting only briefly.
_CHECKPOINT_WAIT = 1.0
#: Seconds a process waits after a checkpoint that did not get through for a moment's
#: reason (another process checkpointing, readers of the latest commits).
_CHECKPOINT_RETRY = 0.2
#: Longest pause between attempts while a reader keeps the log from being copied: the
#: pause doubles from `_CHECKPOINT_RETRY` with each attempt that reader defeats.
_PINNED_BACKOFF_MAX = 60.0
#: Frames at the end of the log that a checkpoint may leave uncopied (the commits of the
#: last moments, still read by live transactions) without a reader counting as pinning an
#: old snapshot: 4 MiB at the default page size.
_RECENT_FRAMES = 1024


@attrs.frozen(kw_only=True)
class Settings:
    """How to open a database file (SqliteStorage gives every field)."""

    #: Path of the database file.
    path: str
    #: "full" (survives power loss) or "normal" (survives process crashes).
    durability: str
    #: Seconds to wait for a lock before BusyError.
    busy_timeout: float
    #: Bytes the WAL is truncated to after a checkpoint.
    journal_size_limit: int
    #: WAL size in bytes past which a maintenance call checkpoints.
    checkpoint_threshold: int
    #: Create a missing database file.
    create: bool
    #: Create the missing folders of a new database's path too (a mistyped folder must not
    #: quietly become a new, empty queue).
    create_folders: bool
    #: Open with `mode=ro`.
    read_only: bool
    #: Open for `upgrade` even when a non-additive migration is pending.
    upgrading: bool
    #: Skip the checks on files other users made (`allow_insecure_permissions`).
    trust_any_owner: bool


class Database:
    """The database file behind one SqliteStorage: connection, lock and transactions."""

    def __init__(self, settings: Settings) -> None:
        check_sqlite_version()
        self.settings = settings
        self.path = settings.path
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._last_checkpoint_check = 0.0
        #: No checkpoint attempt before this (monotonic) time.
        self._checkpoint_after = 0.0
        #: The pause after the last failed attempt (0 after a success).
        self._checkpoint_backoff = 0.0
        #: Commits made through this object that changed rows (PRAGMA data_version only
        #: sees other connections' commits).
        self.local_commits = 0
        #: (data_version, local_commits) as of the last claim, for wait_for_work.
        self.wait_mark: tuple[int, int] | None = None
        #: Whether the connection's `synchronous` is FULL now (see `write(durable=...)`).
        self._sync_full = settings.durability == "full"
        #: A descriptor of the WAL file for `sync` (opened on first use; -1: none).
        self._wal_fd = -1
        #: PRAGMA data_version as `quiet()` last read it (None: not read yet).
        self._quiet_version: int | None = None
        #: Test-only crash points ("claim:after", ...); empty in production.
        self.crash_points = crash_points_from(os.environ.get(CRASH_ENV, ""))
        #: Whether this object created the database file (no other process did).
        self.created = False
        #: Labels of the transaction in progress (kept only while crash points are set).
        self._labels: set[str] = set()
        with self._lock:
            self._conn = self._connect()
            #: The WAL file, next to the file SQLite really opened (a symlinked database's
            #: target; absolute, so a later chdir cannot misdirect it).
            self.wal_path = _main_file(self._conn, os.path.realpath(self.path)) + "-wal"
        _register_for_fork(self)
        kind = network_filesystem(self.path)
        if kind is not None:
            logger.warning(
                "database %s is on a network file system (%s): SQLite's locking is not "
                "reliable there; keep GigQ databases on a local disk",
                self.path,
                kind,
            )

    # -- connection ------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        path, settings = self.path, self.settings
        try:
            if _prepare_file(path, settings):
                self.created = True
            if not settings.trust_any_owner:
                check_journals(path)
            mode = "ro" if settings.read_only else "rw"
            uri = f"file:{quote(os.path.abspath(path))}?mode={mode}"
            conn = open_connection(uri, settings.busy_timeout)
        except sqlite3.Error as err:
            raise translate(err, path) from err
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(settings.busy_timeout * 1000)}")
            ensure_schema(conn, path, read_only=settings.read_only, upgrading=settings.upgrading)
            if not settings.read_only:
                conn.execute("PRAGMA journal_mode = WAL").fetchall()
            synchronous = "FULL" if settings.durability == "full" else "NORMAL"
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            conn.execute(f"PRAGMA journal_size_limit = {int(settings.journal_size_limit)}")
            conn.execute("PRAGMA foreign_keys = OFF")
            # From here on, waits for the write lock are short and retried by
            # _transaction with small jittered pauses up to busy_timeout: SQLite's own busy
            # handler backs off to 100 ms sleeps, so under contention a writer that has
            # waited a while keeps losing the lock to newcomers (and a heartbeat starves).
            conn.execute(f"PRAGMA busy_timeout = {_LOCK_SLICE_MS}")
        except sqlite3.Error as err:
            conn.close()
            raise translate(err, path) from err
        except GigQError:
            conn.close()
            raise
        return conn

    def _after_fork(self) -> None:
        # Runs in a forked child before any use: the parent's lock and connection stay behind.
        self._lock = threading.Lock()
        if self._conn is not None:
            _ABANDONED.append(self._conn)
        self._conn = None
        self._pid = os.getpid()
        self.wait_mark = None
        self._sync_full = self.settings.durability == "full"
        self._wal_fd = -1  # the parent's; never used or closed here
        self._quiet_version = None

    @contextmanager
    def locked(self) -> Iterator[sqlite3.Connection]:
        """The connection, held exclusively by this thread; sqlite3 errors translated."""
        if self._pid != os.getpid():
            self._after_fork()
        with self._lock:
            if self._closed:
                raise StorageError(f"the storage for {self.path} is closed")
            try:
                if self._conn is None:
                    self._conn = self._connect()
                    self._sync_full = self.settings.durability == "full"
                yield self._conn
            except sqlite3.Error as err:
                raise translate(err, self.path) from err

    def close(self) -> None:
        """Close the connection (in the process that opened it)."""
        if self._pid != os.getpid():
            self._after_fork()
        with self._lock:
            self._closed = True
            if self._wal_fd >= 0:
                os.close(self._wal_fd)
                self._wal_fd = -1
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    conn.close()
                except sqlite3.Error as err:
                    raise translate(err, self.path) from err

    # -- transactions ----------------------------------------------------------------------

    def write(
        self,
        work: Callable[[sqlite3.Connection], T],
        *,
        mark_wait: bool = False,
        op: str | None = None,
        durable: bool = True,
    ) -> T:
        """Run `work` in a BEGIN IMMEDIATE transaction and commit; retried while busy.

        `durable=False` commits without waiting for the disk even at durability "full"
        (`synchronous=NORMAL` for this commit): for writes whose loss on power failure
        only makes a job run again (claims, lease renewals). In WAL mode the next durable
        commit syncs the whole log, these commits included, so they never outlive a later
        durable one. `op` labels the transaction for the test-only crash points.
        """
        return self._transaction(
            "BEGIN IMMEDIATE", work, mark_wait=mark_wait, op=op, durable=durable
        )

    def quiet(self) -> bool:
        """Whether no other connection has committed since the last call (False on the
        first): a writer then has the database to itself, and a commit that waits for the
        disk while it holds the write lock keeps nobody waiting."""
        with self.locked() as conn:
            version = _data_version(conn)
        seen, self._quiet_version = self._quiet_version, version
        return version == seen

    def sync(self) -> None:
        """Wait until every commit made so far (by any connection) is on disk: fsync the
        WAL, as a `synchronous=FULL` commit does before it returns. Writes made with
        `durable=False` become durable here; at durability "normal" this does nothing.

        Safe from any thread while others write: it touches no SQLite connection. The
        WAL file is only ever opened and fsynced, never locked, so keeping a descriptor
        of it cannot disturb SQLite's locks (which live on the database and -shm files).
        """
        if self.settings.durability != "full":
            return
        try:
            fd = self._wal_fd
            try:
                current = os.stat(self.wal_path).st_ino
            except FileNotFoundError:
                # No log: not in WAL mode (GigQ always sets it; an open connection keeps
                # the file), and a rollback-journal commit syncs the database itself. Never
                # open the database file here: closing it would drop SQLite's locks.
                return
            if fd < 0 or os.fstat(fd).st_ino != current:
                # First use, or the WAL was removed and made again since: follow the new file.
                new = os.open(self.wal_path, os.O_RDONLY | os.O_CLOEXEC)
                if fd >= 0:
                    os.close(fd)
                self._wal_fd = fd = new
            _fdatasync(fd)  # as SQLite syncs the log (data and size, not timestamps)
        except OSError as err:
            raise StorageError(f"cannot sync the write-ahead log of {self.path}: {err}") from err

    def read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in a deferred read transaction (one consistent snapshot)."""
        return self._transaction("BEGIN", work, mark_wait=False, op=None, durable=True)

    def label(self, op: str) -> None:
        """Add a crash-point label to the write transaction in progress (called by `work`
        when what it did deserves one, e.g. "release"); a no-op unless crash points are set."""
        if self.crash_points:
            self._labels.add(op)

    def _transaction(
        self,
        begin: str,
        work: Callable[[sqlite3.Connection], T],
        *,
        mark_wait: bool,
        op: str | None,
        durable: bool,
    ) -> T:
        deadline = time.monotonic() + self.settings.busy_timeout
        full = durable and self.settings.durability == "full"
        while True:
            with self.locked() as conn:
                if full != self._sync_full and begin != "BEGIN":
                    conn.execute(f"PRAGMA synchronous = {'FULL' if full else 'NORMAL'}")
                    self._sync_full = full
                try:
                    return self._attempt(conn, begin, work, mark_wait, op)
                except sqlite3.OperationalError as err:
                    if _undecodable(err) and conn.text_factory is str:
                        return self._attempt_keeping_bytes(conn, begin, work, mark_wait, op)
                    # busy_timeout already waited; this is the rare busy it cannot absorb
                    # (e.g. a snapshot conflict): retry the whole transaction.
                    if not is_busy(err):
                        raise
                    if time.monotonic() > deadline:
                        raise BusyError(
                            f"database {self.path} stayed locked for more than "
                            f"{self.settings.busy_timeout:g} s"
                        ) from err
            time.sleep(random.uniform(0.0002, 0.002))

    def _attempt_keeping_bytes(
        self,
        conn: sqlite3.Connection,
        begin: str,
        work: Callable[[sqlite3.Connection], T],
        mark_wait: bool,
        op: str | None,
    ) -> T:
        """`_attempt` again, reading text that is not UTF-8 as bytes: a value changed by
        hand then makes its row unreadable (the row mapping says so) instead of failing
        every transaction that reads it. Only here: decoding in Python costs every read."""
        conn.text_factory = _text_or_bytes
        try:
            return self._attempt(conn, begin, work, mark_wait, op)
        finally:
            conn.text_factory = str

    def _attempt(
        self,
        conn: sqlite3.Connection,
        begin: str,
        work: Callable[[sqlite3.Connection], T],
        mark_wait: bool,
        op: str | None,
    ) -> T:
        changes = conn.total_changes
        if self.crash_points:
            self._labels = {op} if op else set()
        conn.execute(begin)
        try:
            result = work(conn)
            version = _data_version(conn) if mark_wait else 0
            if self.crash_points and (
                conn.total_changes != changes or self._labels & _PAGE_ONLY_OPERATIONS
            ):
                crash_at(self.crash_points, self._labels, "before")
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        if self.crash_points and (
            conn.total_changes != changes or self._labels & _PAGE_ONLY_OPERATIONS
        ):
            crash_at(self.crash_points, self._labels, "after")
        if conn.total_changes != changes:
            self.local_commits += 1
        if mark_wait:
            self.wait_mark = (version, self.local_commits)
        return result

    def change_marker(self) -> tuple[int, int]:
        """Something that changes whenever any connection commits to the database."""
        with self.locked() as conn:
            return _data_version(conn), self.local_commits

    # -- maintenance -----------------------------------------------------------------------

    def checkpoint(self) -> tuple[int, int, int]:
        """A TRUNCATE checkpoint: (busy, frames in the log, frames copied), as SQLite's
        `PRAGMA wal_checkpoint` reports it; busy is 0 when the log was copied and emptied.

        This is the only checkpoint GigQ runs (every connection has automatic checkpoints
        off, see `open_connection`). SQLite 3.7.0-3.51.2 can corrupt the database when a
        checkpoint that does not hold the write lock starts while another connection's
        commit resets the log; a TRUNCATE checkpoint takes the write lock first and keeps
        it to the end, so no commit can reset the log under it. It waits up to
        `_CHECKPOINT_WAIT` for that lock (SQLite would run it without the lock, as a PASSIVE
        checkpoint, if it gave up sooner), then copies the log and waits for the readers of
        it to leave. Writers wait meanwhile: for the copy, and at most `_CHECKPOINT_WAIT`
        in all for a reader that holds an old snapshot.
        """
        wait = min(_CHECKPOINT_WAIT, self.settings.busy_timeout)
        with self.locked() as conn:
            conn.execute(f"PRAGMA busy_timeout = {max(1, int(wait * 1000))}")
            try:
                busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                # Back to the short slices of _connect, not the full busy timeout.
                conn.execute(f"PRAGMA busy_timeout = {_LOCK_SLICE_MS}")
        return int(busy), int(frames), int(copied)

    def maybe_checkpoint(self, min_interval: float = 0.0) -> bool:
        """Checkpoint and truncate the WAL if it passed the threshold; True if it did.

        A failed attempt is not repeated at once: after a moment (`_CHECKPOINT_RETRY`) when
        what was in the way passes quickly (another process checkpointing, readers of the
        last commits), after a pause that doubles each time when a reader holds an old
        snapshot (each attempt keeps writers waiting while it waits for that reader).
        """
        if self.settings.read_only:
            return False
        now = time.monotonic()
        if now - self._last_checkpoint_check < min_interval:
            return False
        self._last_checkpoint_check = now
        try:
            # stat, never open(): opening the file would drop SQLite's POSIX locks.
            size = os.path.getsize(self.wal_path)
        except OSError:
            return False
        if size <= self.settings.checkpoint_threshold or now < self._checkpoint_after:
            return False
        try:
            busy, frames, copied = self.checkpoint()
        except StorageError as err:
            # The write that called this has committed: a failed checkpoint must not make it
            # look failed (its caller would retry it). The next check tries again.
            logger.warning("checkpoint of %s failed: %s", self.path, err)
            return False
        if not busy:
            self._checkpoint_backoff = 0.0
            return True
        if frames < 0:
            # Another connection is checkpointing (SQLite runs one at a time and reports
            # no frames to the others): it waits for the write lock, which unpaced writers
            # keep taking while the log grows. Step aside until it is done.
            self._stand_aside(size)
        if copied < frames - _RECENT_FRAMES:  # a reader holds an old snapshot
            backoff = min(max(2 * self._checkpoint_backoff, _CHECKPOINT_RETRY), _PINNED_BACKOFF_MAX)
        else:
            backoff = _CHECKPOINT_RETRY
        self._checkpoint_backoff = backoff
        self._checkpoint_after = time.monotonic() + backoff
        return False

    def _stand_aside(self, size: int) -> None:
        """Write nothing through this connection until the WAL shrinks below `size` (the
        checkpoint in progress elsewhere emptied it), `_CHECKPOINT_WAIT` at most."""
        deadline = time.monotonic() + _CHECKPOINT_WAIT
        with self.locked():
            while time.monotonic() < deadline:
                time.sleep(0.001)
                try:
                    if os.path.getsize(self.wal_path) < size:
                        return
                except OSError:
                    return


def _undecodable(err: sqlite3.OperationalError) -> bool:
    """True for sqlite3's error on a TEXT value that is not valid UTF-8."""
    return str(err).startswith("Could not decode to UTF-8")


def _text_or_bytes(data: bytes) -> str | bytes:
    """A TEXT value as str, or as the bytes stored when they are not UTF-8."""
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data


def open_connection(uri: str, busy_timeout: float) -> sqlite3.Connection:
    """The one place GigQ opens an SQLite connection (tests wrap it to trace statements).

    Automatic checkpoints are off on every connection: they are PASSIVE, run without the
    write lock, and can meet SQLite's WAL-reset bug (3.7.0-3.51.2) when another process
    commits. GigQ checkpoints only with `Database.checkpoint`, which holds the write lock.
    """
    conn = sqlite3.connect(
        uri,
        uri=True,
        timeout=busy_timeout,
        isolation_level=None,
        check_same_thread=False,
        cached_statements=256,
    )
    try:
        conn.execute("PRAGMA wal_autocheckpoint = 0")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open (SQLite ends some itself, e.g. on a full
    disk); a failing rollback must not hide the error that caused it."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def network_filesystem(path: str) -> str | None:
    """The type of the network file system holding `path`, or None (Linux only).

    SQLite's locking is unreliable on network file systems (D11).
    """
    try:
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            lines = mounts.read().splitlines()
    except OSError:
        return None
    target = os.path.realpath(path)
    best, kind = "", ""
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = fields[1].replace("\\040", " ")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, kind = mount, fields[2]
    return kind if kind in NETWORK_FILESYSTEMS else None


#: fdatasync where the platform has it (Linux), fsync elsewhere (macOS).
_fdatasync = getattr(os, "fdatasync", os.fsync)


def _main_file(conn: sqlite3.Connection, fallback: str) -> str:
    """The path of the file SQLite opened for the main database (its WAL sits beside it)."""
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main" and file:
            return str(file)
    return fallback


def _data_version(conn: sqlite3.Connection) -> int:
    (version,) = conn.execute("PRAGMA data_version").fetchone()
    return int(version)


def _prepare_file(path: str, settings: Settings) -> bool:
    """Make sure a database file exists (created 0600) unless told not to create one; True
    if this call created it."""
    try:
        size: int | None = os.stat(path).st_size
    except FileNotFoundError:
        size = None
    except NotADirectoryError:
        raise StorageIOError(
            f"cannot open database {path}: a file stands where one of its folders should be"
        ) from None
    if not size and (settings.read_only or not settings.create):
        what = "does not exist" if size is None else "is empty"
        raise DatabaseNotFoundError(f"the database {os.path.abspath(path)} {what}")
    if not settings.trust_any_owner:
        check_link(path)
    if size is not None:
        if not size and not settings.trust_any_owner:
            check_new_file(path)
        return False
    # A symlink to a file not made yet: make its target (O_EXCL never follows a symlink).
    target = os.path.realpath(path)
    folder = os.path.dirname(target)
    if not settings.create_folders and not os.path.isdir(folder):
        raise DatabaseNotFoundError(
            f"the folder {folder} does not exist, so no database can be made there; create "
            "it, or let GigQ create it (setting create_folders, gigq submit --create-folders)"
        )
    _make_folder(folder)
    try:
        # Created here, before SQLite sees it, so it is 0600 from its first instant; SQLite
        # gives the -wal and -shm files the database file's mode.
        fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return False  # another process created it first
    except PermissionError as err:
        raise PermissionDeniedError(f"permission denied creating database {path}") from err
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return True


def _make_folder(folder: str) -> None:
    """Create missing folders of the database path with mode 0700."""
    missing: list[str] = []
    while folder and not os.path.isdir(folder):
        missing.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    for item in reversed(missing):
        try:
            os.mkdir(item, 0o700)
        except FileExistsError:
            if os.path.isdir(item):
                continue  # another process created it first
            raise StorageIOError(
                f"cannot create the database's folder {item}: a file of that name is there"
            ) from None
        except PermissionError as err:
            raise PermissionDeniedError(f"permission denied creating folder {item}") from err
        except OSError as err:
            raise StorageIOError(f"cannot create folder {item}: {err.strerror}") from err
        os.chmod(item, 0o700)


def _register_for_fork(database: Database) -> None:
    global _fork_hook_registered
    with _FORK_HOOK_LOCK:
        _LIVE.add(database)
        if not _fork_hook_registered:
            os.register_at_fork(
                before=_before_fork,
                after_in_parent=_after_fork_in_parent,
                after_in_child=_after_fork_in_child,
            )
            _fork_hook_registered = True


_HELD: list[threading.Lock] = []


def _before_fork() -> None:
    _FORK_HOOK_LOCK.acquire()
    for database in list(_LIVE):
        if database._pid == os.getpid():
            database._lock.acquire()
            _HELD.append(database._lock)


def _after_fork_in_parent() -> None:
    while _HELD:
        _HELD.pop().release()
    _FORK_HOOK_LOCK.release()


def _after_fork_in_child() -> None:
    _HELD.clear()
    for database in list(_LIVE):
        database._after_fork()
    _FORK_HOOK_LOCK.release()


__all__ = ["CRASH_ENV", "Database", "Settings", "crash_points_from", "open_connection"]
