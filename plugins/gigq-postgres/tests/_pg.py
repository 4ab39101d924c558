"""Helpers of the plugin's tests: the server under test, a plugin manager with the plugin,
and emptying a schema between tests."""

from __future__ import annotations

import os
from typing import Any

import psycopg

import gigq_postgres
from gigq_core.plugins import make_plugin_manager
from gigq_postgres.schema import TABLES

#: The server under test, without a schema.
SERVER_URL = os.environ.get("GIGQ_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def make_pm() -> Any:
    """A fresh plugin manager with this plugin registered (no entry points involved)."""
    pm = make_plugin_manager(load_entrypoints=False)
    if not pm.has_plugin("postgres"):
        pm.register(gigq_postgres, name="postgres")
    return pm


def with_schema(url: str, schema: str) -> str:
    """`url` with `schema=` added to its query."""
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


def empty_tables(url: str, schema: str) -> None:
    """Delete every row of the GigQ tables in `schema` (fast: no DDL, no new files)."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        for table in TABLES:
            conn.execute(
                psycopg.sql.SQL("DELETE FROM {}.{}").format(
                    psycopg.sql.Identifier(schema), psycopg.sql.Identifier(table)
                )
            )
