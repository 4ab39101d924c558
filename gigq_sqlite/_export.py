"""Export of a whole SQLite queue (the optional `export()` capability), read through a
connection of its own; the algorithm is gigq_sql.export's."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from gigq_sql.export import export_items as read_items
from gigq_sql.sqlite import SQLITE
from gigq_sqlite import _connection
from gigq_sqlite._errors import translate


def export_items(path: str, busy_timeout: float) -> Iterator[dict[str, Any]]:
    """Stream the database at `path` as export items, from one read snapshot.

    Reads through a read-only connection of its own, so the storage's shared connection
    (and its lock) stays free while the consumer works between items.
    """
    uri = f"file:{quote(os.path.abspath(path))}?mode=ro"
    try:
        conn = _connection.open_connection(uri, busy_timeout)
    except sqlite3.Error as err:
        raise translate(err, path) from err
    try:
        conn.execute("BEGIN")  # one snapshot for the whole export
        yield from read_items(conn, SQLITE, conn.cursor())
    except sqlite3.Error as err:
        raise translate(err, path) from err
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


__all__ = ["export_items"]
