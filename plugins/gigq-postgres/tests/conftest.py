"""Fixtures of the plugin's tests: one throwaway schema per run on the PostgreSQL server
(dropped at the end), emptied before each test that uses it.

The server comes from GIGQ_TEST_POSTGRES_URL (default: the local server that ci.sh
starts). An unreachable server stops the run with a clear message: never a silent skip.
The repository root goes on the import path, so the root's storage contract suite and
lifecycle state machine run here on PostgreSQL.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _pg import SERVER_URL, empty_tables, make_pm, with_schema  # noqa: E402  (path set above)
from gigq_core.plugins import open_storage  # noqa: E402
from gigq_core.ports import Storage  # noqa: E402
from gigq_core.records import JobRecord  # noqa: E402
from gigq_core.testing import FakeClock  # noqa: E402

settings.register_profile("default", max_examples=50, deadline=None)
settings.register_profile("ci", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The server URL, checked once: an unreachable server ends the run with a message."""
    try:
        with psycopg.connect(SERVER_URL, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as err:
        reason = str(err).strip().splitlines()[0]
        pytest.exit(
            f"the PostgreSQL server for the gigq-postgres tests is unreachable at "
            f"{SERVER_URL} ({reason}); start it (plugins/gigq-postgres/ci.sh does) or set "
            "GIGQ_TEST_POSTGRES_URL",
            returncode=3,
        )
    return SERVER_URL


@pytest.fixture(scope="session")
def pg_schema(pg_server: str) -> Iterator[str]:
    """This run's throwaway schema (created by opening the store), dropped at the end."""
    schema = f"gigq_test_{uuid.uuid4().hex[:12]}"
    store = open_storage(with_schema(pg_server, schema), None, pm=make_pm())
    store.close()
    try:
        yield schema
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    psycopg.sql.Identifier(schema)
                )
            )


@pytest.fixture
def pg_url(pg_server: str, pg_schema: str) -> str:
    """The URL of an empty store in this run's schema."""
    empty_tables(pg_server, pg_schema)
    return with_schema(pg_server, pg_schema)


@pytest.fixture
def plugin_manager() -> Any:
    """A fresh plugin manager with the plugin registered."""
    return make_pm()


@pytest.fixture
def open_target(pg_url: str, plugin_manager: Any) -> Iterator[Callable[[], Storage]]:
    """Open a storage object on this test's (empty) store; each is closed after the test.

    Several objects on one store stand for several processes sharing it.
    """
    opened: list[Storage] = []

    def open_one() -> Storage:
        store = open_storage(pg_url, None, pm=plugin_manager)
        opened.append(store)
        return store

    try:
        yield open_one
    finally:
        for store in reversed(opened):
            store.close()


@pytest.fixture
def storage(open_target: Callable[[], Storage]) -> Storage:
    """An empty PostgreSQL storage, closed after the test."""
    return open_target()


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock, starting at 2030-01-01 UTC."""
    return FakeClock()


@pytest.fixture
def make_job(clock: FakeClock) -> Callable[..., JobRecord]:
    """Build a valid JobRecord submitted at the clock's current time."""
    from tests.contract._factory import job_record

    def make(**overrides: Any) -> JobRecord:
        return job_record(clock.now(), **overrides)

    return make
