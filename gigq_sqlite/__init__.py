"""The SQLite storage adapter of GigQ: jobs in one database file."""

from __future__ import annotations

from gigq_sqlite.storage import SqliteStorage

__all__ = ["SqliteStorage"]
