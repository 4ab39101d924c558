"""Group commit for submits: threads of one process that submit at the same time share
one transaction (and one fsync), each in its own savepoint.

Under load, commits are the cost: every submit at durability "full" waits for the disk.
The rows are written under the database's write lock and the log is flushed after the
lock is released, so other writers (in any process) wait only for the writing. Here a
thread that finds another submit in progress queues its jobs; the thread running the
transaction takes every queued request into the next one. Each request keeps its own
all-or-nothing result: a request that fails (an unknown dependency, a taken id) rolls back
to its savepoint and gets its own error, and the others commit. The first thread of a
batch leads it; when its batch is done it hands the lead to the oldest waiting thread, so
no caller serves others for long.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import datetime

from gigq_core.errors import GigQError, StorageError, StorageIOError
from gigq_core.records import JobRecord
from gigq_sqlite._connection import Database
from gigq_sqlite._errors import SQLITE_FULL, primary_code, translate

#: Most requests one transaction takes.
MAX_BATCH = 64

Insert = Callable[[sqlite3.Connection, Sequence[JobRecord], datetime], list[str]]


class _Request:
    def __init__(self, jobs: Sequence[JobRecord], now: datetime) -> None:
        self.jobs = jobs
        self.now = now
        self.ids: list[str] | None = None
        self.error: BaseException | None = None
        #: Set when the request is done, or when its thread should lead the next batch.
        self.wake = threading.Event()


class InsertBatcher:
    """Runs `insert(conn, jobs, now)` for concurrent callers in shared transactions."""

    def __init__(self, db: Database, insert: Insert) -> None:
        self._db = db
        self._insert = insert
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._waiting: list[_Request] = []
        self._leading = False

    def insert(self, jobs: Sequence[JobRecord], now: datetime) -> list[str]:
        """Store `jobs` atomically (alone or beside other callers'); their ids."""
        if self._pid != os.getpid():
            self._reset()  # a forked child: the parent's threads and queue stay behind
        request = _Request(jobs, now)
        with self._lock:
            self._waiting.append(request)
            lead = not self._leading
            self._leading = True
        if not lead:
            request.wake.wait()
        if request.ids is None and request.error is None:
            self._lead()  # this thread was handed the lead: run the queue's head batch
        if request.error is not None:
            raise request.error
        assert request.ids is not None
        return request.ids

    def _lead(self) -> None:
        with self._lock:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
        try:
            self._run(batch)
        finally:
            with self._lock:
                successor = self._waiting[0] if self._waiting else None
                self._leading = successor is not None
            for request in batch:
                if request.ids is None and request.error is None:
                    request.error = GigQError("the submit was interrupted")
                request.wake.set()
            if successor is not None:
                successor.wake.set()  # not done: its thread leads the next batch
        # Submitters bound the WAL too: with many of them and busy workers, the sweep alone
        # would check too rarely to keep it under 64 MB, and no connection checkpoints on
        # its own (automatic checkpoints are off). A stat() per batch, a checkpoint only
        # past the threshold. After the wake-ups: the batch's callers do not wait for it.
        self._db.maybe_checkpoint()

    def _run(self, batch: list[_Request]) -> None:
        written = False  # every request's rows written: what fails next is the COMMIT

        def work(conn: sqlite3.Connection) -> None:
            nonlocal written
            written = False
            for request in batch:  # a retried transaction starts over
                request.ids, request.error = None, None
            for request in batch:
                conn.execute("SAVEPOINT gigq_submit")
                try:
                    ids = self._insert(conn, request.jobs, request.now)
                except (GigQError, sqlite3.IntegrityError) as err:
                    conn.execute("ROLLBACK TO gigq_submit")
                    conn.execute("RELEASE gigq_submit")
                    if isinstance(err, sqlite3.Error):
                        err = translate(err, self._db.path)
                    request.error = err
                else:
                    conn.execute("RELEASE gigq_submit")
                    request.ids = ids
            written = True

        # While other connections write (submitters in other processes, workers), the rows
        # are written under the write lock and the fsync is made after it is released:
        # the others wait for the lock only while rows are written, not through the disk
        # flush, and concurrent flushes of the log coalesce. With the database to itself
        # (no other commit since this process's last submit), a synchronous=FULL commit
        # keeps nobody waiting and costs less than a commit and a separate fsync. Either
        # way no caller hears back before its jobs are durable.
        try:
            alone = self._db.quiet()
        except StorageError:
            alone = False  # the write below retries, and says what is wrong if it must
        try:
            self._db.write(work, op="submit", durable=alone)
        except StorageIOError as err:
            # Nothing was committed, unless the I/O error was the disk failing the commit's
            # own sync: then the log holds the rows, and a later recovery may bring them back.
            # A full disk refusing the log's write (SQLITE_FULL) comes before any sync.
            if alone and written and not _log_write_refused(err):
                self._unconfirmed(batch, err)
            else:
                self._failed(batch, err)
            return
        except BaseException as err:  # nothing of this batch was committed
            self._failed(batch, err)
            return
        if alone:
            return
        try:
            self._db.sync()
        except StorageError as err:
            self._unconfirmed(batch, err)

    @staticmethod
    def _failed(batch: list[_Request], err: BaseException) -> None:
        for request in batch:
            request.ids, request.error = None, err

    @staticmethod
    def _unconfirmed(batch: list[_Request], err: StorageError) -> None:
        """The rows were written, the disk did not confirm them: say so to each request
        that had them."""
        stored = StorageError(
            f"the jobs were stored, but the disk did not confirm them ({err}): they may be "
            "lost on power loss; check with `gigq list` before submitting them again"
        )
        for request in batch:
            if request.ids is not None:
                request.ids, request.error = None, stored


def _log_write_refused(err: StorageIOError) -> bool:
    """Whether SQLite failed the commit when writing the log (SQLITE_FULL), before its sync:
    then the log holds none of the transaction."""
    cause = err.__cause__
    return isinstance(cause, sqlite3.Error) and primary_code(cause) == SQLITE_FULL


__all__ = ["MAX_BATCH", "InsertBatcher"]
