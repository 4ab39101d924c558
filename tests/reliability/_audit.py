"""The BEGIN IMMEDIATE audit (docs/guarantees.md): a trace callback on every
connection gigq_sqlite opens records, per connection, how the current transaction began; a
write (INSERT, UPDATE, DELETE, REPLACE, also under WITH) anywhere but inside a transaction
opened with BEGIN IMMEDIATE is a violation. A plain BEGIN that later writes fails at once
with SQLITE_BUSY under contention, whatever the busy timeout."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable

import attrs

_COMMENTS = re.compile(r"^(\s|--[^\n]*\n|/\*.*?\*/)*", re.S)
_WRITE = re.compile(r"\b(INSERT|UPDATE|DELETE|REPLACE)\b", re.I)
_FIRST = re.compile(r"[A-Za-z]+")

Opener = Callable[[str, float], sqlite3.Connection]


@attrs.define
class Violation:
    """A write outside a BEGIN IMMEDIATE transaction."""

    uri: str
    transaction: str  # "none" (autocommit) or "deferred"
    sql: str


@attrs.define
class WriteAudit:
    """Counts writes and collects violations over every connection it has traced."""

    violations: list[Violation] = attrs.field(factory=list)
    #: Writes seen inside BEGIN IMMEDIATE, by first keyword.
    writes: Counter[str] = attrs.field(factory=Counter)
    connections: int = 0
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def wrap(self, opener: Opener) -> Opener:
        """An `open_connection` that traces what it opens."""

        def traced(uri: str, busy_timeout: float) -> sqlite3.Connection:
            conn = opener(uri, busy_timeout)
            conn.set_trace_callback(self._tracer(uri))
            with self._lock:
                self.connections += 1
            return conn

        return traced

    def _tracer(self, uri: str) -> Callable[[str], None]:
        transaction = "none"

        def trace(sql: str) -> None:
            nonlocal transaction
            text = _COMMENTS.sub("", sql, count=1)
            match = _FIRST.match(text)
            first = match.group(0).upper() if match else ""
            if first == "BEGIN":
                immediate = text.upper().split()[1:2] == ["IMMEDIATE"]
                transaction = "immediate" if immediate else "deferred"
            elif first in ("COMMIT", "END") or (
                first == "ROLLBACK" and "TO" not in text.upper().split()[1:3]
            ):
                transaction = "none"
            elif first in ("INSERT", "UPDATE", "DELETE", "REPLACE") or (
                first == "WITH" and _WRITE.search(text)
            ):
                with self._lock:
                    if transaction == "immediate":
                        self.writes[first] += 1
                    else:
                        self.violations.append(Violation(uri, transaction, text[:300]))

        return trace


__all__ = ["Violation", "WriteAudit"]
