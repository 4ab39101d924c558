"""Turning psycopg exceptions into GigQ errors at the adapter's edge, and telling which of
them are worth retrying."""

from __future__ import annotations

import re

import psycopg

from gigq_core.errors import (
    BusyError,
    DiskFullError,
    GigQError,
    PermissionDeniedError,
    ReadOnlyError,
    StorageError,
    StorageIOError,
    StorageUnavailableError,
    UserError,
)

#: SQLSTATEs of conflicts that a fresh attempt of the same transaction resolves.
RETRY_STATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available
    }
)

#: SQLSTATEs (and classes) of a server going away or refusing new sessions for now.
_GONE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})

#: The partial unique index that keeps two active jobs from sharing a unique key; a
#: concurrent submitter that hits it retries and then finds the holder.
UNIQUE_ACTIVE_INDEX = "jobs_unique_active"

# Reasons libpq gives for a failed connection, and the sentence each becomes.
_LOGIN_FAILURES = (
    (re.compile(r'database "([^"]*)" does not exist'), "database"),
    (re.compile(r'role "([^"]*)" does not exist'), "role"),
    (re.compile(r"password authentication failed for user \"([^\"]*)\""), "password"),
    (re.compile(r"no password supplied|fe_sendauth"), "nopassword"),
    (re.compile(r"no pg_hba.conf entry"), "hba"),
)


def is_connection_lost(err: BaseException, conn: psycopg.Connection | None) -> bool:
    """True when `err` means the connection is gone (the server restarted, a network
    failure, the backend was terminated): a new connection may succeed."""
    if not isinstance(err, psycopg.OperationalError):
        return False
    state = getattr(err, "sqlstate", None)
    if state is not None and (state.startswith("08") or state in _GONE_STATES):
        return True
    return conn is not None and (conn.closed or conn.broken)


def is_conflict(err: BaseException) -> bool:
    """True for a conflict with another transaction that a retry resolves."""
    state = getattr(err, "sqlstate", None)
    if state in RETRY_STATES:
        return True
    if isinstance(err, psycopg.errors.UniqueViolation):
        diag = getattr(err, "diag", None)
        return getattr(diag, "constraint_name", None) == UNIQUE_ACTIVE_INDEX
    return False


def connect_failure(err: BaseException, where: str) -> GigQError:
    """One sentence for a connection that could not be made to `where`."""
    text = _first_line(err)
    for pattern, kind in _LOGIN_FAILURES:
        found = pattern.search(text)
        if found is None:
            continue
        if kind == "database":
            name = found.group(1)
            return StorageUnavailableError(
                f"the PostgreSQL database '{name}' does not exist on {_host(where)}; "
                f"create it first (createdb {name})"
            )
        if kind == "role":
            return StorageUnavailableError(
                f"PostgreSQL at {_host(where)} refused the login: role '{found.group(1)}' "
                "does not exist"
            )
        if kind == "password":
            return StorageUnavailableError(
                f"PostgreSQL at {_host(where)} refused the login: wrong password for user "
                f"'{found.group(1)}'"
            )
        if kind == "nopassword":
            return StorageUnavailableError(
                f"PostgreSQL at {_host(where)} asked for a password and none was given"
            )
        return StorageUnavailableError(
            f"PostgreSQL at {_host(where)} refused the connection (no pg_hba.conf entry "
            "allows this host, user and database)"
        )
    lowered = text.lower()
    if "connection refused" in lowered:
        reason = "connection refused: is the server running there?"
    elif "timeout expired" in lowered or "timed out" in lowered:
        reason = "the connection timed out"
    elif "failed to resolve host" in lowered or "could not translate host name" in lowered:
        reason = "unknown host name"
    elif "too many" in lowered and "clients" in lowered:
        reason = "too many connections"
    else:
        reason = _strip_prefix(text)
    return StorageUnavailableError(f"cannot connect to PostgreSQL at {_host(where)} ({reason})")


def translate(err: BaseException, url: str) -> GigQError:
    """The GigQ error for a psycopg exception raised while using the store at `url`."""
    state = getattr(err, "sqlstate", None) or ""
    detail = _first_line(err)
    if isinstance(err, UnicodeError):
        return UserError(f"a value cannot be encoded for PostgreSQL: {err}")
    if state.startswith("08") or state in _GONE_STATES or isinstance(err, psycopg.OperationalError):
        if state in ("40001", "40P01", "55P03"):
            return BusyError(f"PostgreSQL kept reporting conflicts on {url} ({detail})")
        return StorageUnavailableError(f"lost the connection to PostgreSQL at {url} ({detail})")
    if state == "25006":
        return ReadOnlyError(f"the PostgreSQL store {url} is read-only ({detail})")
    if state == "42501":
        return PermissionDeniedError(f"permission denied on the PostgreSQL store {url} ({detail})")
    if state == "53100":
        return DiskFullError(f"the PostgreSQL server's disk is full ({url})")
    if state.startswith("53") or state.startswith("58"):
        return StorageIOError(f"the PostgreSQL server failed on {url} ({detail})")
    if state.startswith("22"):
        return UserError(f"PostgreSQL cannot store that value: {detail}")
    return StorageError(f"PostgreSQL failed on {url}: {detail}")


def _host(where: str) -> str:
    host, _, database = where.partition("/")
    return f"{host} (database '{database}')" if database else host


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _strip_prefix(text: str) -> str:
    # libpq: 'connection failed: connection to server at "h", port 5432 failed: REASON'
    reason = text.rsplit("failed:", 1)[-1].strip()
    return reason.removeprefix("FATAL:").strip() or text


__all__ = [
    "RETRY_STATES",
    "UNIQUE_ACTIVE_INDEX",
    "connect_failure",
    "is_conflict",
    "is_connection_lost",
    "translate",
]
