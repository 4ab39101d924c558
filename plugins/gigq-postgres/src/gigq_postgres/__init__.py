"""GigQ's PostgreSQL storage plugin: `JobQueue("postgresql://...")` and
`gigq --db postgresql://... worker` on many hosts against one database.

Loading this module (every `gigq` start, through the entry point) imports neither psycopg
nor the adapter; they load when a PostgreSQL URL is opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gigq_core.hookspecs import hookimpl
from gigq_sql.options import BUSY_TIMEOUT, DURABILITY

if TYPE_CHECKING:
    from gigq_core.settings import Option
    from gigq_postgres.storage import PostgresStorage

#: The settings this storage declares, shared with the SQLite storage (read from
#: `GIGQ_DURABILITY` too, ...). Its other settings (`schema`, `pool_size`, ...) and libpq's
#: keywords pass through undeclared: from keywords, the URL query or `[tool.gigq]`, never
#: from `GIGQ_*` variables.
OPTIONS: dict[str, Option[Any]] = {"durability": DURABILITY, "busy_timeout": BUSY_TIMEOUT}


def open_postgres(url: str, options: dict[str, Any]) -> PostgresStorage | None:
    """A PostgresStorage for a `postgresql://` or `postgres://` URL, or None."""
    from gigq_postgres._options import is_postgres_url, parse

    if not is_postgres_url(url):
        return None
    settings = parse(url, options)
    from gigq_postgres.storage import PostgresStorage

    return PostgresStorage(settings)


@hookimpl
def gigq_storage(url: str, options: dict[str, Any]) -> PostgresStorage | None:
    """Answer postgresql:// and postgres:// URLs."""
    return open_postgres(url, options)


@hookimpl
def gigq_settings() -> dict[str, Option[Any]]:
    """The settings of GigQ's chain this storage reads."""
    return OPTIONS


def __getattr__(name: str) -> Any:
    # Loaded on first use, like gigq_sqlite: the plugin module is imported by every start.
    if name == "PostgresStorage":
        from gigq_postgres.storage import PostgresStorage

        return PostgresStorage
    raise AttributeError(f"module 'gigq_postgres' has no attribute {name!r}")


__all__ = ["OPTIONS", "PostgresStorage", "gigq_settings", "gigq_storage", "open_postgres"]
