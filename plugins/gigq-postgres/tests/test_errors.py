"""Bad servers, credentials, databases and schemas: one clear sentence, the right error
class (and CLI exit code), nothing written."""

from __future__ import annotations

import socket

import psycopg
import pytest
from click.testing import CliRunner

from _pg import make_pm, with_schema
from gigq_core import JobQueue
from gigq_core.errors import (
    DatabaseNotFoundError,
    NotADatabaseError,
    SchemaVersionError,
    StorageUnavailableError,
)
from gigq_core.plugins import open_storage


def free_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bad_urls(server: str) -> dict[str, tuple[str, str]]:
    """Kind -> (URL, a word the message must contain)."""
    host = server.split("@", 1)[-1].split("/", 1)[0]
    user = server.split("://", 1)[1].split("@", 1)[0] if "@" in server else "postgres"
    return {
        "unreachable": (f"postgresql://{user}@127.0.0.1:{free_port()}/test", "connection refused"),
        "credentials": (f"postgresql://no_such_role_gigq@{host}/test", "no_such_role_gigq"),
        "database": (f"postgresql://{user}@{host}/no_such_db_gigq", "does not exist"),
    }


@pytest.mark.parametrize("kind", ["unreachable", "credentials", "database"])
def test_the_api_raises_storage_unavailable_with_one_sentence(pg_server, kind):
    url, word = bad_urls(pg_server)[kind]

    with pytest.raises(StorageUnavailableError) as caught:
        JobQueue(url, plugin_manager=make_pm())

    message = str(caught.value)
    assert word in message
    assert "\n" not in message
    assert caught.value.exit_code == 69


@pytest.mark.parametrize("kind", ["unreachable", "credentials", "database"])
def test_the_cli_exits_69_with_one_sentence(pg_server, kind):
    from gigq_cli import create_cli

    url, word = bad_urls(pg_server)[kind]

    result = CliRunner().invoke(create_cli(make_pm()), ["--db", url, "list"])

    assert result.exit_code == 69, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: ")
    assert word in line


def test_the_password_never_appears_in_a_message(pg_server):
    host = pg_server.split("@", 1)[-1].split("/", 1)[0]
    url = f"postgresql://no_such_role_gigq:hunter2secret@{host}/test"

    with pytest.raises(StorageUnavailableError) as caught:
        open_storage(url, None, pm=make_pm())

    assert "hunter2secret" not in str(caught.value)


def test_a_read_command_does_not_create_a_missing_schema(pg_server):
    from gigq_cli import create_cli

    schema = "gigq_never_created_x"
    url = with_schema(pg_server, schema)

    result = CliRunner().invoke(create_cli(make_pm()), ["--db", url, "list"])

    assert result.exit_code == 1, result.stderr
    assert "no GigQ schema" in result.stderr
    with pytest.raises(DatabaseNotFoundError):
        open_storage(url, {"create": False}, pm=make_pm())
    with psycopg.connect(pg_server) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone()
    assert found == (0,)


@pytest.fixture
def scratch_schema(pg_server):
    """A schema of this test, dropped afterwards."""
    name = "gigq_scratch_errors"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        conn.execute(f"CREATE SCHEMA {name}")
    try:
        yield name
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def test_a_schema_with_foreign_tables_is_refused_and_left_unchanged(pg_server, scratch_schema):
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {scratch_schema}.customers (id int)")

    with pytest.raises(NotADatabaseError, match="not GigQ's"):
        open_storage(with_schema(pg_server, scratch_schema), None, pm=make_pm())

    with psycopg.connect(pg_server) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", (scratch_schema,)
        ).fetchall()
    assert tables == [("customers",)]


def test_a_newer_schema_version_is_refused(pg_server, scratch_schema):
    url = with_schema(pg_server, scratch_schema)
    open_storage(url, None, pm=make_pm()).close()
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(
            f"UPDATE {scratch_schema}.gigq_meta SET value = '99' WHERE key = 'schema_version'"
        )

    with pytest.raises(SchemaVersionError, match="newer"):
        open_storage(url, None, pm=make_pm())
