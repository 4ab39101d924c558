"""GigQ's SQL layer, free of any database driver: the row mappers, the insert, claim,
finish, requeue, cascade and export algorithms over a small connection protocol, the
storage front end, and one dialect per database (`gigq_sql.sqlite`,
`gigq_sql.postgresql`). It imports gigq_core only; the adapters bring the connections.

This module loads only the protocol and the dialect base: the plugin modules import
`gigq_sql.options` at every `gigq` start, and the algorithms load when storage opens."""

from __future__ import annotations

from gigq_sql.connection import Connection, Cursor
from gigq_sql.dialect import BadColumn, Dialect

__all__ = ["BadColumn", "Connection", "Cursor", "Dialect"]
