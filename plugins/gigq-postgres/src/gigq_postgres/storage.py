"""PostgresStorage: the Storage port on one PostgreSQL schema, shared by workers on many
hosts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

import psycopg

from gigq_postgres._connection import Database, SqlConnection
from gigq_postgres._options import Settings
from gigq_postgres.schema import SCHEMA_VERSION, read_version
from gigq_sql.connection import Connection
from gigq_sql.export import export_items
from gigq_sql.postgresql import POSTGRES
from gigq_sql.storage import PLAIN, SqlStorage, Work, Writing

T = TypeVar("T")


class PostgresStorage(SqlStorage):
    """Jobs in one PostgreSQL schema; safe for threads of one process and for many
    processes on many hosts."""

    dialect = POSTGRES

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.display_url
        self.schema = settings.schema
        self._db = Database(settings)

    def __repr__(self) -> str:
        return f"PostgresStorage({self.url!r})"

    # -- transactions (see SqlStorage) -----------------------------------------------------

    def _read(self, work: Work[T], *, snapshot: bool = False) -> T:
        # READ COMMITTED gives a transaction no snapshot of its own: every read runs
        # without BEGIN/COMMIT.
        return self._db.run(lambda raw, attempt: work(SqlConnection(raw), attempt), single=True)

    def _write(self, work: Work[T], how: Writing = PLAIN) -> T:
        return self._db.run(
            lambda raw, attempt: work(SqlConnection(raw), attempt), single=how.single, op=how.op
        )

    def _label(self, op: str) -> None:
        self._db.label(op)

    def _wake(self, conn: Connection) -> None:
        assert isinstance(conn, SqlConnection)
        self._db.notify(conn)

    def wait_for_work(self, timeout: float) -> bool:
        """Block up to `timeout` seconds until a notification says a job may be ready.

        Inserts, finishes, requeues, rescues and resumed queues NOTIFY on the schema's
        channel when they commit; this waits on a LISTEN connection (opened on first use),
        so an idle worker starts a new job at once without polling the tables.
        """
        return self._db.wait(timeout)

    # -- capabilities ----------------------------------------------------------------------

    def diagnose(self) -> list[dict[str, Any]]:
        """Checks for `gigq doctor`: each a dict with `check`, `ok` and `detail`."""

        def work(raw: psycopg.Connection, _: int) -> list[dict[str, Any]]:
            row = raw.execute(
                "SELECT current_setting('server_version'), current_setting('synchronous_commit')"
            ).fetchone()
            assert row is not None
            version = read_version(raw, self.schema)
            stuck = raw.execute(
                "SELECT count(*) FROM jobs WHERE status = 'running' AND lease_expires_at < now()"
            ).fetchone()
            return [
                _check("server", True, f"PostgreSQL {row[0]}"),
                _check("schema", version == SCHEMA_VERSION, f"'{self.schema}' version {version}"),
                _check("synchronous_commit", True, str(row[1])),
                _check(
                    "expired leases",
                    not stuck or not stuck[0],
                    f"{stuck[0] if stuck else 0} running job(s) past their lease by the "
                    "server's clock (no worker sweeping, or clocks apart)",
                ),
            ]

        return self._db.run(work)

    def export(self) -> Iterator[dict[str, Any]]:
        """The queue as a stream of JSON-able items (gigq_core.transfer), from one
        REPEATABLE READ snapshot read through a server-side cursor (the jobs are never all
        in memory at once)."""
        with self._db.connection() as raw, raw.transaction():
            raw.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            with raw.cursor(name="gigq_export") as cursor:
                yield from export_items(SqlConnection(raw), POSTGRES, cursor)

    def close(self) -> None:
        """Close every connection; the object may not be used afterwards."""
        self._db.close()


def _check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"check": name, "ok": ok, "detail": detail}


__all__ = ["PostgresStorage"]
