"""GigQ's SQLite storage adapter: the embedded default."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gigq_sqlite.storage import SqliteStorage


def __getattr__(name: str) -> Any:
    # Loaded on first use: the plugin module is imported by every `gigq` start.
    if name == "SqliteStorage":
        from gigq_sqlite.storage import SqliteStorage

        return SqliteStorage
    raise AttributeError(f"module 'gigq_sqlite' has no attribute {name!r}")


__all__ = ["SqliteStorage"]
