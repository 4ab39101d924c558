"""Turning sqlite3 exceptions into GigQ storage errors, at the adapter's edge."""

from __future__ import annotations

import os
import sqlite3

from gigq_core.errors import (
    BusyError,
    CorruptDatabaseError,
    DiskFullError,
    NotADatabaseError,
    PermissionDeniedError,
    ReadOnlyError,
    StorageError,
    StorageIOError,
)

# Primary result codes (https://www.sqlite.org/rescode.html).
SQLITE_PERM = 3
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
SQLITE_AUTH = 23
SQLITE_NOTADB = 26

# Messages of errors raised without a result code (older Pythons, some driver paths).
_MESSAGES = (
    ("database is locked", SQLITE_BUSY),
    ("database table is locked", SQLITE_LOCKED),
    ("database or disk is full", SQLITE_FULL),
    ("readonly database", SQLITE_READONLY),
    ("disk i/o error", SQLITE_IOERR),
    ("malformed", SQLITE_CORRUPT),
    ("file is not a database", SQLITE_NOTADB),
    ("unable to open database file", SQLITE_CANTOPEN),
)


def primary_code(err: sqlite3.Error) -> int | None:
    """The primary SQLite result code of an exception, if it can be told."""
    code = getattr(err, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF
    text = str(err).lower()
    for fragment, value in _MESSAGES:
        if fragment in text:
            return value
    return None


def is_busy(err: sqlite3.Error) -> bool:
    """True for SQLITE_BUSY / SQLITE_LOCKED: worth retrying until the deadline."""
    return primary_code(err) in (SQLITE_BUSY, SQLITE_LOCKED)


def translate(err: sqlite3.Error, path: str) -> StorageError:
    """The GigQ error for a sqlite3 exception raised while using the database at `path`."""
    code = primary_code(err)
    detail = str(err)
    if code in (SQLITE_BUSY, SQLITE_LOCKED):
        return BusyError(f"database {path} stayed locked past the busy timeout ({detail})")
    if code == SQLITE_FULL or (code == SQLITE_IOERR and _no_room(path)):
        return DiskFullError(f"the disk is full (or the database size limit reached): {path}")
    if code == SQLITE_READONLY:
        return ReadOnlyError(f"database {path} is read-only ({detail})")
    if code == SQLITE_NOTADB:
        return NotADatabaseError(f"{path} is not a GigQ database (not an SQLite file)")
    if code == SQLITE_CORRUPT:
        return CorruptDatabaseError(
            f"database {path} is corrupt ({detail}); restore it from a backup"
        )
    if code == SQLITE_IOERR:
        return StorageIOError(f"I/O error on database {path} ({detail})")
    if code in (SQLITE_PERM, SQLITE_AUTH):
        return PermissionDeniedError(f"permission denied on database {path} ({detail})")
    if code == SQLITE_CANTOPEN:
        return _cannot_open(path, detail)
    if isinstance(err, sqlite3.ProgrammingError) and "closed" in detail:
        return StorageError(f"the storage for {path} is closed")
    return StorageError(f"SQLite failed on {path}: {detail}")


#: Bytes free below which an I/O error is taken for a full disk: with this much, SQLite
#: could still grow its shared-memory index (32 KiB at a time) and write a few log pages.
_NO_ROOM = 64 * 1024


def _no_room(path: str) -> bool:
    """Whether the file system holding the database at `path` is (all but) full.

    SQLite reports ENOSPC as SQLITE_FULL only when it writes the database or its log;
    growing the shared-memory index (which opening a database no process holds open
    does) or syncing the log fails with a plain I/O error, whatever the cause. Blocks kept
    for root count as free for root, who may use them."""
    try:
        info = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return False
    if not info.f_blocks:  # a file system that gives no sizes tells nothing
        return False
    blocks = info.f_bfree if os.geteuid() == 0 else info.f_bavail
    return blocks * info.f_frsize < _NO_ROOM


def _cannot_open(path: str, detail: str) -> StorageError:
    folder = os.path.dirname(os.path.abspath(path))
    denied = (os.path.exists(path) and not os.access(path, os.R_OK)) or (
        os.path.isdir(folder) and not os.access(folder, os.R_OK | os.X_OK)
    )
    if denied:
        return PermissionDeniedError(f"permission denied opening database {path}")
    return StorageIOError(f"cannot open database {path} ({detail})")


__all__ = ["is_busy", "primary_code", "translate"]
