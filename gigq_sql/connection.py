"""The connection protocol the SQL layer is written over: what sqlite3's connections offer
as they are, and what gigq-postgres wraps psycopg's in."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol


class Cursor(Protocol):
    """The result of one statement: rows as tuples, and how many rows it changed."""

    @property
    def rowcount(self) -> int:
        """Rows the statement changed (for executemany, all of its runs together)."""
        ...

    def fetchone(self) -> Any:
        """The next row, or None."""
        ...

    def fetchall(self) -> list[Any]:
        """The rows left."""
        ...

    def fetchmany(self, size: int = ..., /) -> list[Any]:
        """Up to `size` of the rows left."""
        ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A connection inside the caller's transaction; parameters in the dialect's style."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor:
        """Run one statement."""
        ...

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor:
        """Run one statement once per parameter row."""
        ...


__all__ = ["Connection", "Cursor"]
