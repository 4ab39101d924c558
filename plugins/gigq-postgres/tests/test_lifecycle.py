"""The root lifecycle state machine (tests/property/test_lifecycle.py), run on PostgreSQL.

It reuses the machine class unchanged; only the store differs: this run's schema, emptied
before each example (no DDL per example, so the run stays fast).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis.stateful import run_state_machine_as_test

from _pg import empty_tables, make_pm
from gigq_core.plugins import open_storage
from gigq_core.settings import DEFAULTS
from tests.property.test_lifecycle import LifecycleMachine, machine_settings, print_summary


class PostgresLifecycle(LifecycleMachine):
    """The lifecycle machine on this run's PostgreSQL schema."""

    adapter = "postgres"
    #: (server URL, schema), set by the test before the machine runs.
    store: tuple[str, str] = ("", "")

    def __init__(self) -> None:
        server, schema = self.store
        empty_tables(server, schema)
        self.pm = make_pm()
        super().__init__()

    def _open(self) -> Any:
        server, schema = self.store
        options = dict(DEFAULTS)
        options.update(durability="normal", schema=schema)
        return open_storage(server, options, self.pm)


def test_lifecycle_state_machine_on_postgres(pg_server: str, pg_schema: str) -> None:
    PostgresLifecycle.store = (pg_server, pg_schema)
    run_state_machine_as_test(PostgresLifecycle, settings=machine_settings(30))
    print_summary("postgres")


def test_the_machine_runs_on_this_schema(pg_server: str, pg_schema: str) -> None:
    PostgresLifecycle.store = (pg_server, pg_schema)
    machine = PostgresLifecycle()
    try:
        assert machine.storage.url.startswith(("postgresql://", "postgres://"))
        assert getattr(machine.storage, "schema", None) == pg_schema
    finally:
        machine.teardown()


pytestmark = pytest.mark.filterwarnings("error")
