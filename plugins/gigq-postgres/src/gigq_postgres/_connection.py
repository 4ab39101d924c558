"""Connections of one PostgresStorage: a small pool shared by threads, retrying
transactions, a LISTEN connection for wake-ups, and fork safety.

Why not psycopg_pool: its pools run maintenance threads, which do not survive fork(), and
a worker forks its job processes after opening the storage. This pool has no thread of
its own: connections are opened on demand (up to `pool_size`) and checked on return.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.adapt import Buffer, Loader
from psycopg.pq import Format

from gigq_core.errors import BusyError, GigQError, StorageError
from gigq_postgres._errors import connect_failure, is_conflict, is_connection_lost, translate
from gigq_postgres._options import Settings
from gigq_postgres.schema import ensure_schema
from gigq_sql.crash import crash_at, crash_points

T = TypeVar("T")

logger = logging.getLogger("gigq.postgres")

#: Longest pause between two retries of a failed transaction, in seconds.
MAX_PAUSE = 1.0

# Connections left behind by fork(): the child must never use them, nor close them (closing
# sends a Terminate message on the socket it shares with the parent, ending the parent's
# session). Keeping them referenced until exit is the only safe thing to do with them.
_ABANDONED: list[psycopg.Connection] = []

_LIVE: weakref.WeakSet[Database] = weakref.WeakSet()
_FORK_HOOK_LOCK = threading.Lock()
_fork_hook_registered = False


class SqlConnection:
    """A psycopg connection as gigq_sql's Connection protocol (executemany through a
    cursor); `raw` is the connection itself."""

    def __init__(self, raw: psycopg.Connection) -> None:
        self.raw = raw

    def execute(self, query: str, parameters: Any = None, /) -> psycopg.Cursor[Any]:
        """Run one statement."""
        return self.raw.execute(query, parameters)

    def executemany(self, query: str, parameters: Iterable[Any], /) -> psycopg.Cursor[Any]:
        """Run one statement once per parameter row."""
        cursor = self.raw.cursor()
        cursor.executemany(query, parameters)
        return cursor


class OutOfRange:
    """A timestamptz value that Python's datetime cannot hold, as the server wrote it."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return repr(self.text)


def register_loaders(conn: psycopg.Connection) -> None:
    """Make `conn` load a timestamptz out of datetime's range as an OutOfRange value, so one
    such row no longer fails the whole query that reads it."""
    oid = conn.adapters.types["timestamptz"].oid
    for fmt in (Format.TEXT, Format.BINARY):
        base = conn.adapters.get_loader(oid, fmt)
        if base is None or issubclass(base, _CheckedLoader):
            continue
        checked: type[Loader] = type(
            f"Checked{base.__name__}", (_CheckedLoader,), {"base": base, "format": fmt}
        )
        conn.adapters.register_loader(oid, checked)


class _CheckedLoader(Loader):
    base: type[Loader]

    def __init__(self, oid: int, context: Any = None) -> None:
        super().__init__(oid, context)
        self._inner = self.base(oid, context)

    def load(self, data: Buffer) -> Any:
        try:
            return self._inner.load(data)
        except psycopg.DataError:
            if self.format is Format.TEXT:
                return OutOfRange(bytes(data).decode("utf-8", "replace"))
            return OutOfRange("a time out of range")


class Database:
    """The database behind one PostgresStorage."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.display_url
        self.channel = f"gigq.{settings.schema}"[:63]
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._idle: list[psycopg.Connection] = []
        self._open = 0
        self._closed = False
        #: True once a connection was made: from then on a refused connection is a server
        #: restarting (retried until the deadline), not a wrong URL (reported at once).
        self._reached = False
        self._listener: psycopg.Connection | None = None
        self._listen_lock = threading.Lock()
        self._wake = threading.Condition()
        self._wake_generation = 0
        #: Test-only crash points ("claim:after", ...; gigq_sql.crash); empty in production.
        self.crash_points = crash_points()
        #: The labels of each thread's write transaction in progress (with crash points).
        self._labels = threading.local()
        conn = self._connect(first=True)
        self._reached = True
        self._release(conn)
        _register_for_fork(self)

    # -- connections -----------------------------------------------------------------------

    def _connect(self, first: bool = False) -> psycopg.Connection:
        settings = self.settings
        try:
            conn = psycopg.connect(settings.conninfo, autocommit=True)
        except psycopg.Error as err:
            raise connect_failure(err, settings.where) from err
        try:
            register_loaders(conn)
            conn.execute("SET TIME ZONE 'UTC'")
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.schema)))
            synchronous = "on" if settings.durability == "full" else "off"
            conn.execute(sql.SQL("SET synchronous_commit TO {}").format(sql.SQL(synchronous)))
            # A prepared statement's generic plan is kept until the next ANALYZE: one made
            # while a table was nearly empty after an ANALYZE (a sequential scan, cheaper
            # then) would go on scanning the table as it grows. Custom plans follow its size.
            conn.execute("SET plan_cache_mode TO force_custom_plan")
            if settings.read_only:
                conn.execute("SET default_transaction_read_only TO on")
            if first:
                ensure_schema(
                    conn,
                    settings.schema,
                    settings.where,
                    create=settings.create,
                    read_only=settings.read_only,
                )
        except GigQError:
            conn.close()
            raise
        except (psycopg.Error, UnicodeError) as err:
            conn.close()
            raise translate(err, self.url) from err
        return conn

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            self._after_fork()

    def _after_fork(self) -> None:
        # Runs in a forked child before any use: the parent's connections stay behind.
        _ABANDONED.extend(self._idle)
        if self._listener is not None:
            _ABANDONED.append(self._listener)
        self._idle = []
        self._listener = None
        self._open = 0
        self._cond = threading.Condition()
        self._listen_lock = threading.Lock()
        self._wake = threading.Condition()
        self._pid = os.getpid()

    def _acquire(self) -> psycopg.Connection:
        self._check_fork()
        with self._cond:
            while True:
                if self._closed:
                    raise StorageError(f"the storage for {self.url} is closed")
                if self._idle:
                    return self._idle.pop()
                if self._open < self.settings.pool_size:
                    self._open += 1
                    break
                self._cond.wait()
        try:
            return self._connect()
        except BaseException:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            raise

    def _release(self, conn: psycopg.Connection) -> None:
        if self._pid != os.getpid():
            _ABANDONED.append(conn)  # borrowed before a fork; never touched in the child
            return
        keep = not conn.closed and not conn.broken
        if keep and not _is_idle(conn):
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
            keep = _is_idle(conn)
        with self._cond:
            if keep and not self._closed:
                self._idle.append(conn)
                self._cond.notify()
                return
            self._open -= 1
            self._cond.notify()
        with contextlib.suppress(psycopg.Error):
            conn.close()

    def close(self) -> None:
        """Close every connection of this process; the object may not be used afterwards."""
        self._check_fork()
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._cond.notify_all()
        with self._listen_lock:
            listener, self._listener = self._listener, None
        for conn in [*idle, *([listener] if listener is not None else [])]:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection, held for work that spans many statements and cannot be
        retried as one unit (an export's snapshot); psycopg errors are translated."""
        conn = self._acquire()
        try:
            yield conn
        except psycopg.Error as err:
            raise translate(err, self.url) from err
        finally:
            self._release(conn)

    # -- transactions ----------------------------------------------------------------------

    def run(
        self,
        work: Callable[[psycopg.Connection, int], T],
        *,
        single: bool = False,
        op: str | None = None,
    ) -> T:
        """Run `work(conn, attempt)` in one transaction and commit; returns its result.

        `single`: `work` runs one statement, atomic by itself, so it runs without
        BEGIN/COMMIT (two round trips fewer).

        A lost connection (after the first successful one) or a conflict with another
        transaction rolls back and runs `work` again on a fresh connection, with backoff,
        until `busy_timeout` has passed. `attempt` counts the tries (0 first): a retry
        after a commit whose acknowledgement was lost must not apply the work twice, so
        `work` functions are written to be safe to repeat.

        `op` labels the transaction for the test-only crash points: with GIGQ_TEST_CRASH
        set, a labelled write always runs between BEGIN and COMMIT, so that the process can
        die with its statements sent and not committed (the server rolls them back).
        """
        deadline: float | None = None
        pause = 0.02
        attempt = 0
        while True:
            conn: psycopg.Connection | None = None
            try:
                conn = self._acquire()
                if self.crash_points:
                    return self._run_labelled(conn, work, attempt, single=single, op=op)
                if single:
                    return work(conn, attempt)
                with conn.transaction():
                    return work(conn, attempt)
            except GigQError as err:
                if isinstance(err, StorageError) and self._reached and self._is_connect_error(err):
                    failure: BaseException = err
                else:
                    raise
            except UnicodeError as err:
                raise translate(err, self.url) from err
            except psycopg.Error as err:
                if not (is_conflict(err) or (self._reached and is_connection_lost(err, conn))):
                    raise translate(err, self.url) from err
                failure = err
            finally:
                if conn is not None:
                    self._release(conn)
            now = time.monotonic()
            if deadline is None:
                deadline = now + self.settings.busy_timeout
                if not is_conflict(failure):
                    logger.warning("PostgreSQL at %s: %s; retrying", self.url, _line(failure))
            if now + pause > deadline:
                if isinstance(failure, GigQError):
                    raise failure
                if is_conflict(failure):
                    raise BusyError(
                        f"PostgreSQL at {self.url} kept reporting conflicts for more than "
                        f"{self.settings.busy_timeout:g} s ({_line(failure)})"
                    ) from failure
                raise translate(failure, self.url) from failure
            time.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE)
            attempt += 1

    def label(self, op: str) -> None:
        """Add a crash-point label to this thread's write transaction in progress (e.g.
        "rescue" when a sweep rescued jobs); a no-op unless crash points are set."""
        labels: set[str] | None = getattr(self._labels, "current", None)
        if labels is not None:
            labels.add(op)

    def _run_labelled(
        self,
        conn: psycopg.Connection,
        work: Callable[[psycopg.Connection, int], T],
        attempt: int,
        *,
        single: bool,
        op: str | None,
    ) -> T:
        """`run`'s transaction with the test-only crash points: the process exits right
        before or right after the COMMIT of a transaction labelled as a crash point names,
        if it wrote anything (a claim that found no job is no claim)."""
        if single and op is None:
            return work(conn, attempt)
        labels: set[str] = {op} if op else set()
        self._labels.current = labels
        with conn.transaction():
            result = work(conn, attempt)
            wrote = bool(labels) and _wrote(conn)
            if wrote:
                crash_at(self.crash_points, labels, "before")
        if wrote:
            crash_at(self.crash_points, labels, "after")
        return result

    @staticmethod
    def _is_connect_error(err: GigQError) -> bool:
        from gigq_core.errors import StorageUnavailableError

        return isinstance(err, StorageUnavailableError) and "cannot connect" in str(err)

    def notify(self, conn: SqlConnection) -> None:
        """Wake the waiters of every process once the current transaction commits."""
        conn.execute("SELECT pg_notify(%s, '')", (self.channel,))

    # -- waiting for work ------------------------------------------------------------------

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` s for a notification; True when one came (see Storage).

        One thread at a time listens on the LISTEN connection; other threads of the process
        wait for it to see a notification, and take over when it stops listening.
        """
        self._check_fork()
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._wake:
            generation = self._wake_generation
        while True:
            remaining = deadline - time.monotonic()
            if self._listen_lock.acquire(blocking=False):
                try:
                    with self._wake:
                        if self._wake_generation != generation:
                            return True
                    if self._listen(max(remaining, 0.0)):
                        with self._wake:
                            self._wake_generation += 1
                            self._wake.notify_all()
                        return True
                    return False
                finally:
                    self._listen_lock.release()
            if remaining <= 0:
                return False
            with self._wake:
                if self._wake.wait_for(
                    lambda: self._wake_generation != generation, timeout=min(remaining, 0.05)
                ):
                    return True

    def _listen(self, timeout: float) -> bool:
        """Wait on the LISTEN connection (opened on first use); True on a notification.

        A listener that broke is reopened and reports True: notifications sent while it
        was gone are lost, so the caller must look for itself.
        """
        if self._closed:
            raise StorageError(f"the storage for {self.url} is closed")
        reopened = False
        if self._listener is None or self._listener.closed or self._listener.broken:
            if self._listener is not None:
                with contextlib.suppress(psycopg.Error):
                    self._listener.close()
            self._listener = None
            try:
                listener = self._connect()
                listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            except GigQError:
                time.sleep(min(timeout, 0.5))
                return False
            except psycopg.Error:
                time.sleep(min(timeout, 0.5))
                return False
            reopened = self._listener_opened_before
            self._listener = listener
            self._listener_opened_before = True
        if reopened:
            return True
        try:
            got = any(True for _ in self._listener.notifies(timeout=timeout, stop_after=1))
            if got:
                # Drain what else arrived, so one burst of changes wakes the caller once.
                for _ in self._listener.notifies(timeout=0.001):
                    pass
            return got
        except psycopg.Error:
            return True

    _listener_opened_before = False


def _wrote(conn: psycopg.Connection) -> bool:
    """Whether the transaction in progress wrote anything (it has a transaction id)."""
    row = conn.execute("SELECT txid_current_if_assigned()").fetchone()
    return row is not None and row[0] is not None


def _is_idle(conn: psycopg.Connection) -> bool:
    """True when the connection is outside any transaction (safe to hand to another user)."""
    return conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def _line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _register_for_fork(database: Database) -> None:
    global _fork_hook_registered
    with _FORK_HOOK_LOCK:
        _LIVE.add(database)
        if not _fork_hook_registered:
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _fork_hook_registered = True


def _after_fork_in_child() -> None:
    for database in list(_LIVE):
        database._after_fork()


__all__ = ["Database", "OutOfRange", "SqlConnection", "register_loaders"]
